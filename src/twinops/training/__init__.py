"""Training side: DAPT, SFT and DPO (LoRA, merged), the reranker, MLflow tracking, registry and gate.

Library entry points (the CLI and the KFP components are thin shells around them):

- ``train_dapt(DAPTJob, Settings) -> TrainResult`` (the author's text, before SFT),
  ``train_sft(SFTJob, Settings) -> TrainResult``, ``train_dpo(DPOJob, ...)``,
  ``train_reranker(RerankerJob, ...)``
- ``merge_adapter(adapter_dir, output_dir, settings, base_model=None) -> MergeResult``
- ``register_model(...) / register_result(TrainResult, settings) -> ModelVersion``,
  ``record_metrics(name, version, metrics, settings)``, ``list_versions(settings)``
- ``nominate(name, settings, gate=None, version=None) -> GateDecision`` (the gate: ``challenger``);
  ``promote_by_hand(name, version, settings, reason=...)`` (the manual ``champion`` override)

Heavy modules (torch, trl, mlflow) load on first use, so ``import twinops.training`` stays fast.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

from twinops.training.config import DAPTJob, DPOJob, LoraSpec, RerankerJob, SFTJob, TrainerSpec, load_job
from twinops.training.runs import TrainResult

_LAZY = {
    "train_dapt": "twinops.training.dapt",
    "train_sft": "twinops.training.sft",
    "train_dpo": "twinops.training.dpo",
    "train_reranker": "twinops.training.reranker",
    "merge_adapter": "twinops.training.merge",
    "MergeResult": "twinops.training.merge",
    "register_model": "twinops.training.registry",
    "register_result": "twinops.training.registry",
    "record_metrics": "twinops.training.registry",
    "list_versions": "twinops.training.registry",
    "nominate": "twinops.training.gate",
    "promote_by_hand": "twinops.training.gate",
    "load_gate": "twinops.training.gate",
    "GateConfig": "twinops.training.gate",
    "MetricRule": "twinops.training.gate",
    "GateDecision": "twinops.training.gate",
}

__all__ = [
    "DAPTJob",
    "DPOJob",
    "GateConfig",
    "GateDecision",
    "LoraSpec",
    "MergeResult",
    "MetricRule",
    "RerankerJob",
    "SFTJob",
    "TrainResult",
    "TrainerSpec",
    "list_versions",
    "load_gate",
    "load_job",
    "merge_adapter",
    "nominate",
    "promote_by_hand",
    "record_metrics",
    "register_model",
    "register_result",
    "train_dapt",
    "train_dpo",
    "train_reranker",
    "train_sft",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'twinops.training' has no attribute {name!r}")
