"""Canary rollouts of a new model: on a KServe InferenceService, or on the local router.

``RolloutController`` (``controller``) starts a canary at the first traffic step, then at every
interval scores it on the golden set (``scoring``), reads its error rate and p95 latency
(``health``: Prometheus, or probing), and steps up, promotes or rolls back (``gates.decide``).
Targets: ``kserve.KServeTarget`` (Knative ``canaryTrafficPercent`` with tag routing, or Standard
``spec.canary[]``, read from the resource) and ``local.LocalRouterTarget`` (the weights of
``twinops.serving.router``). Decisions go to MLflow (``tracking``, experiment ``twinops-rollout``;
promotion moves ``champion``) and onto the target (annotations, events). ``runner`` wires it all
from options for the CLI (``twinops rollout``), the KFP step and ``python -m twinops.rollout``.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

# Resolved on first use: the CLI imports ``rollout.plan``'s defaults at start-up, and the package
# must not pull in the controller, its HTTP clients and the registry with them.
_LAZY = {
    "RolloutController": "twinops.rollout.controller",
    "Thresholds": "twinops.rollout.plan",
    "parse_interval": "twinops.rollout.plan",
    "parse_steps": "twinops.rollout.plan",
    "RolloutOptions": "twinops.rollout.runner",
    "make_controller": "twinops.rollout.runner",
    "start_rollout": "twinops.rollout.runner",
    "Decision": "twinops.rollout.state",
    "Health": "twinops.rollout.state",
    "RolloutState": "twinops.rollout.state",
}

__all__ = list(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'twinops.rollout' has no attribute {name!r}")
