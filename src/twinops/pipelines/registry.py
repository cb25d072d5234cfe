"""Pipeline name → factory; the one list the CLI, compile, local runs and submit share."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twinops.errors import NotFound

# name -> dotted factory path; imported lazily so `twinops --help` does not load kfp.
_FACTORIES: dict[str, str] = {
    "feature_pipeline": "twinops.pipelines.definitions:build_feature_pipeline",
    "training_pipeline": "twinops.pipelines.definitions:build_training_pipeline",
    "twin_pipeline": "twinops.pipelines.definitions:build_twin_pipeline",
    "deployment_pipeline": "twinops.pipelines.definitions:build_deployment_pipeline",
    "drift_pipeline": "twinops.pipelines.definitions:build_drift_pipeline",
}


def pipeline_names() -> list[str]:
    return list(_FACTORIES)


def canonical_name(name: str) -> str:
    """Accept ``twin_pipeline``, ``twin-pipeline`` and ``twin``; anything else is one clear line."""
    key = name.strip().lower().replace("-", "_")
    if key in _FACTORIES:
        return key
    if f"{key}_pipeline" in _FACTORIES:
        return f"{key}_pipeline"
    raise NotFound(f"pipeline {name!r} does not exist: choose one of {', '.join(_FACTORIES)}")


def factory(name: str) -> Callable[..., Any]:
    import importlib

    module_name, attribute = _FACTORIES[canonical_name(name)].split(":")
    return getattr(importlib.import_module(module_name), attribute)


def get_pipeline(name: str, *, target: str = "cluster", profile: Any = None) -> Any:
    """The pipeline (a kfp GraphComponent) built for ``target`` ('cluster' or 'local')."""
    from twinops.pipelines.definitions import Build
    from twinops.pipelines.gpu import DEFAULT_PROFILE

    return factory(name)(Build(target=target, profile=profile or DEFAULT_PROFILE))
