"""Training datasets from the author's chunks: instruction, preference, golden and reranker sets.

``build_datasets(job, settings)`` is the stage entry point (the CLI and the KFP component call it).
Heavy libraries (datasets, torch, mlflow) load only inside the functions that need them.
"""

from twinops.datasets.builder import build_datasets
from twinops.datasets.corpus import EmptyCorpus
from twinops.datasets.golden import CanaryLeak, assert_no_canary
from twinops.datasets.jobs import DatasetBuildSummary, DatasetJob
from twinops.infra.dataset_store import load_splits

__all__ = [
    "CanaryLeak",
    "DatasetBuildSummary",
    "DatasetJob",
    "EmptyCorpus",
    "assert_no_canary",
    "build_datasets",
    "load_splits",
]
