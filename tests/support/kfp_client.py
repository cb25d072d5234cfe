"""A recording stand-in for ``kfp.Client`` that refuses what the real client refuses.

There is no Kubeflow Pipelines API server here: every call is bound to the signature of the real
kfp 2.17 method of that name (a misspelt or missing argument is a ``TypeError``, as against kfp),
recorded with its arguments by name, and answered with ids. ``kfp_api`` makes a KFP API answer at a
host (multi-user or standalone, as the test says), with no kubeconfig unless the test writes one.
"""

from __future__ import annotations

import inspect
import typing
from pathlib import Path
from types import SimpleNamespace

import kfp
import pytest

from twinops.pipelines.submit import KfpEndpoint

# The real client, kept before any test replaces kfp.Client with the stand-in.
REAL_KFP_CLIENT = kfp.Client
KFP_HOST = "http://kfp.example:8080/"


def _uploaded(args: tuple, kwargs: dict) -> SimpleNamespace:
    package = Path(kwargs.get("pipeline_package_path", args[0] if args else ""))
    return SimpleNamespace(pipeline_id="p-1", head=package.read_text()[:19])


_ANSWERS = {
    "get_pipeline_id": None,
    "upload_pipeline": _uploaded,
    "upload_pipeline_version": SimpleNamespace(pipeline_version_id="v-1"),
    "create_experiment": SimpleNamespace(experiment_id="e-1"),
    "run_pipeline": SimpleNamespace(run_id="r-1"),
    "create_recurring_run": SimpleNamespace(recurring_run_id="rr-1"),
}


class RecordingClient:
    """Stands in for kfp.Client: bound to the real signatures, recorded, answered with ids."""

    calls: typing.ClassVar[list[tuple[str, dict]]] = []

    def __init__(self, *args, **kwargs) -> None:
        self._record("__init__", args, kwargs)

    def _record(self, method: str, args: tuple, kwargs: dict) -> None:
        bound = inspect.signature(getattr(REAL_KFP_CLIENT, method)).bind(self, *args, **kwargs)
        self.calls.append((method, {k: v for k, v in bound.arguments.items() if k != "self"}))

    def __getattr__(self, method: str):
        if method not in _ANSWERS:
            raise AttributeError(method)

        def call(*args, **kwargs):
            self._record(method, args, kwargs)
            answer = _ANSWERS[method]
            return answer(args, kwargs) if callable(answer) else answer

        return call

    @classmethod
    def call(cls, method: str) -> dict:
        (arguments,) = [arguments for name, arguments in cls.calls if name == method]
        return arguments


@pytest.fixture
def kfp_api(monkeypatch: pytest.MonkeyPatch):
    """``kfp_api(multi_user)`` → a host where a KFP API answers; the client is ``RecordingClient``."""

    def answering(multi_user: bool | None = None) -> str:
        monkeypatch.setattr(
            "twinops.pipelines.submit.check_host",
            lambda host: KfpEndpoint(url=host.rstrip("/"), multi_user=multi_user),
        )
        return KFP_HOST

    monkeypatch.setenv("KUBECONFIG", "/nonexistent/kubeconfig")
    monkeypatch.delenv("TWINOPS_NAMESPACE", raising=False)
    RecordingClient.calls = []
    return answering
