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

from twinops.rollout.controller import RolloutController
from twinops.rollout.plan import Thresholds, parse_interval, parse_steps
from twinops.rollout.runner import RolloutOptions, make_controller, start_rollout
from twinops.rollout.state import Decision, Health, RolloutState

__all__ = [
    "Decision",
    "Health",
    "RolloutController",
    "RolloutOptions",
    "RolloutState",
    "Thresholds",
    "make_controller",
    "parse_interval",
    "parse_steps",
    "start_rollout",
]
