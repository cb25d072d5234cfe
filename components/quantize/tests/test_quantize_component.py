"""quantize: the container shape's command, and the local shape's hand-off (bits=0 passes through).

The real GPTQ pass (in .venv-quantize) runs in the training pipeline's local run.
"""

import json
from pathlib import Path

import pytest

from twinops.pipelines import quantize_step
from twinops.pipelines.components import quantize, quantize_local


def test_container_shape_runs_the_quantize_step_module() -> None:
    container = quantize.component_spec.implementation.container
    assert container.command == ["python", "-m", "twinops.pipelines.quantize_step"]
    assert "--model-pointer" in container.args and "--calibration-pointer" in container.args
    assert "twinops-quantize" in container.image


def test_bits_zero_passes_the_model_through(settings, artifacts) -> None:
    folder = settings.home / "runs" / "dpo" / "r1" / "merged"
    folder.mkdir(parents=True)
    model = artifacts.pointer(
        "Model", "model", kind="llm", path="runs/dpo/r1/merged", dataset_version_ids=["preference-1"]
    )
    calibration = artifacts.pointer("Dataset", "calibration", kind="instruction", path="datasets/i1")
    quantized = artifacts.new("Model", "quantized")
    quantize_local.python_func(model=model, calibration=calibration, quantized=quantized, bits=0)
    pointer = json.loads(Path(quantized.path).read_text())
    assert pointer["path"] == "runs/dpo/r1/merged" and pointer["quantized"] is False
    assert pointer["dataset_version_ids"] == ["preference-1"]
    assert quantized.metadata["kind"] == "llm"


def test_module_cli_rejects_a_non_pointer(settings, tmp_path: Path) -> None:
    bogus = tmp_path / "model.json"
    bogus.write_text(json.dumps({"path": "x"}))
    with pytest.raises(SystemExit, match="not a twinops pointer"):
        quantize_step.main(
            ["--model-pointer", str(bogus), "--output-pointer", str(tmp_path / "out"), "--bits", "4"]
        )
