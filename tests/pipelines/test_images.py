"""Images are named in one place, from TWINOPS_IMAGE_REGISTRY / TWINOPS_IMAGE_TAG."""

import pytest

from twinops import __version__
from twinops.errors import ConfigError
from twinops.pipelines.components import COMPONENTS, GPU_COMPONENTS
from twinops.pipelines.images import ImageFamily, all_images, image


def test_default_names() -> None:
    assert image(ImageFamily.DATA) == f"ghcr.io/twinops/twinops-data:{__version__}"
    assert set(all_images()) == {"data", "train", "quantize"}


def test_env_overrides(monkeypatch) -> None:
    monkeypatch.setenv("TWINOPS_IMAGE_REGISTRY", "registry.example.org:5000/me/")
    monkeypatch.setenv("TWINOPS_IMAGE_TAG", "2026.11.1")
    assert image("train") == "registry.example.org:5000/me/twinops-train:2026.11.1"


@pytest.mark.parametrize(
    ("variable", "value"),
    [("TWINOPS_IMAGE_TAG", "latest"), ("TWINOPS_IMAGE_TAG", "a b"), ("TWINOPS_IMAGE_REGISTRY", "Bad//Reg")],
)
def test_bad_names_are_one_line(monkeypatch, variable: str, value: str) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigError, match=variable) as raised:
        image("data")
    assert "\n" not in str(raised.value)


def test_every_component_runs_in_a_twinops_image() -> None:
    for name, component in COMPONENTS.items():
        ref = component.component_spec.implementation.container.image
        expected = {
            "quantize": ImageFamily.QUANTIZE,
            **dict.fromkeys(GPU_COMPONENTS - {"quantize"}, ImageFamily.TRAIN),
        }.get(name, ImageFamily.DATA)
        assert ref == image(expected), name
