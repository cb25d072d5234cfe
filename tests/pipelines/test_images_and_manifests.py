"""The pipelines' Dockerfiles (parsed: no Docker engine here). The manifests, the chart and the serve
image are tested in tests/deploy."""

import re
from pathlib import Path

import pytest
from dockerfile_parse import DockerfileParser

from twinops.pipelines.images import ImageFamily

ROOT = Path(__file__).resolve().parents[2]
OCI_LABELS = {
    "org.opencontainers.image.title",
    "org.opencontainers.image.version",
    "org.opencontainers.image.source",
    "org.opencontainers.image.licenses",
}


@pytest.mark.parametrize("family", [family.value for family in ImageFamily])
def test_dockerfile(family: str) -> None:
    path = ROOT / "images" / family / "Dockerfile"
    parser = DockerfileParser(path=str(path))
    base = parser.baseimage
    assert re.search(r":\d[\w.-]*$", base), f"{family}: FROM {base} is not pinned to a version tag"
    assert "latest" not in path.read_text()
    assert set(parser.labels) >= OCI_LABELS, f"{family}: missing OCI labels"
    assert parser.labels["org.opencontainers.image.title"] == f"twinops-{family}"
    users = [item["value"] for item in parser.structure if item["instruction"] == "USER"]
    assert users and users[-1].split(":")[0] not in {"root", "0"}, f"{family} must end as a non-root user"
    # What each image installs (its environment's lock) is checked in tests/test_locks.py.
    if family == ImageFamily.QUANTIZE:  # no kfp next to gptqmodel's protobuf
        lock = (ROOT / "locks" / "quantize.txt").read_text()
        assert "\ngptqmodel==" in lock and "\nkfp==" not in lock
