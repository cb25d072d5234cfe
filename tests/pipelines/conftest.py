"""Pipeline tests compile with the default image names, whatever the caller's environment says."""

import pytest


@pytest.fixture(autouse=True)
def default_images(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TWINOPS_IMAGE_REGISTRY", raising=False)
    monkeypatch.delenv("TWINOPS_IMAGE_TAG", raising=False)
