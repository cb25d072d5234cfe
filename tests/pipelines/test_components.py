"""Every component compiles, is documented, and has its folder with a generated README and tests."""

from pathlib import Path

import pytest
import yaml
from kfp import compiler

from twinops.pipelines.components import COMPONENTS
from twinops.pipelines.docs import stale_readmes

ROOT = Path(__file__).resolve().parents[2]
ARTIFACT_TYPES = {"system.Dataset", "system.Model", "system.Metrics", "system.HTML", "system.Markdown"}


@pytest.mark.parametrize("name", list(COMPONENTS))
def test_component_compiles(name: str, tmp_path: Path) -> None:
    component = COMPONENTS[name]
    path = tmp_path / f"{name}.yaml"
    compiler.Compiler().compile(component, str(path))
    spec = yaml.safe_load(path.read_text())
    assert spec["pipelineInfo"]["name"]
    outputs = component.component_spec.outputs or {}
    kinds = {str(item.type).split("@")[0] for item in outputs.values()}
    # Reports and metrics are KFP artifacts, so the Kubeflow Pipelines UI shows them.
    assert kinds & ARTIFACT_TYPES, name
    assert component.component_spec.description, f"{name} has no docstring"


@pytest.mark.parametrize("name", list(COMPONENTS))
def test_component_folder(name: str) -> None:
    folder = ROOT / "components" / name
    assert (folder / "README.md").is_file()
    assert list((folder / "tests").glob("test_*.py")), f"{name} has no paired tests"
    source = (folder / "component.py").read_text()
    function = getattr(COMPONENTS[name], "python_func", None) or COMPONENTS[name].pipeline_func
    assert f"import {function.__name__}" in source or f" {function.__name__}," in source


def test_every_documented_input_and_output() -> None:
    for name, component in COMPONENTS.items():
        function = getattr(component, "python_func", None) or component.pipeline_func
        doc = function.__doc__ or ""
        spec = component.component_spec
        for arg in [*(spec.inputs or {}), *(output for output in spec.outputs or {} if output != "Output")]:
            assert f"{arg}:" in doc, f"{name}: `{arg}` is not documented"


def test_readmes_are_fresh() -> None:
    stale = stale_readmes(ROOT / "components")
    assert not stale, f"stale component READMEs, run `twinops pipeline docs`: {stale}"
