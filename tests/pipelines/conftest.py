"""Pipeline tests compile with the default image names, whatever the caller's environment says."""

import pytest
from tests.support.kfp_client import kfp_api  # noqa: F401 - the recording kfp.Client's fixture


@pytest.fixture(autouse=True)
def default_images(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TWINOPS_IMAGE_REGISTRY", raising=False)
    monkeypatch.delenv("TWINOPS_IMAGE_TAG", raising=False)
