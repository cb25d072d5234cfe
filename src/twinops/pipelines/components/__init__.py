"""The KFP components, one module each; ``COMPONENTS`` maps the folder name under ``components/``.

Each component is a thin shell: its body imports ``twinops`` and calls one library stage, and
turns the stage's summary into KFP artifacts (pointers, metrics, HTML/Markdown reports).
"""

from __future__ import annotations

from typing import Any

from twinops.pipelines.components.build_datasets import build_datasets
from twinops.pipelines.components.chunk_embed_load import chunk_embed_load
from twinops.pipelines.components.clean_and_gate import clean_and_gate
from twinops.pipelines.components.dapt import dapt
from twinops.pipelines.components.dpo import dpo
from twinops.pipelines.components.drift_report import drift_report
from twinops.pipelines.components.evaluate import evaluate
from twinops.pipelines.components.feast_materialize import feast_materialize
from twinops.pipelines.components.fit_drift_reference import fit_drift_reference
from twinops.pipelines.components.ingest import ingest
from twinops.pipelines.components.quantize import quantize, quantize_local
from twinops.pipelines.components.register_and_gate import register_and_gate
from twinops.pipelines.components.rollout import rollout
from twinops.pipelines.components.sft import sft
from twinops.pipelines.components.train_reranker import train_reranker

# Folder name (kebab-case, as in kubeflow/pipelines-components) -> component.
COMPONENTS: dict[str, Any] = {
    "ingest": ingest,
    "clean-and-gate": clean_and_gate,
    "chunk-embed-load": chunk_embed_load,
    "feast-materialize": feast_materialize,
    "build-datasets": build_datasets,
    "dapt": dapt,
    "sft": sft,
    "dpo": dpo,
    "train-reranker": train_reranker,
    "quantize": quantize,
    "evaluate": evaluate,
    "register-and-gate": register_and_gate,
    "fit-drift-reference": fit_drift_reference,
    "rollout": rollout,
    "drift-report": drift_report,
}

# Steps that need an accelerator on a cluster; every other step asks for none.
GPU_COMPONENTS = frozenset({"dapt", "sft", "dpo", "train-reranker", "quantize", "evaluate"})

__all__ = [
    "COMPONENTS",
    "GPU_COMPONENTS",
    "build_datasets",
    "chunk_embed_load",
    "clean_and_gate",
    "dapt",
    "dpo",
    "drift_report",
    "evaluate",
    "feast_materialize",
    "fit_drift_reference",
    "ingest",
    "quantize",
    "quantize_local",
    "register_and_gate",
    "rollout",
    "sft",
    "train_reranker",
]
