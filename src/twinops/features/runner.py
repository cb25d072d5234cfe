"""``run_features``: clean-and-gate → chunk-embed-load → Feast materialize, in one process.

Each stage is also callable alone (the KFP components do that, handing a ``GateResult`` file
from the first to the second). Incremental by default: only warehouse documents changed since
the last committed run are processed; a run with nothing new writes nothing.
"""

from __future__ import annotations

import time

from twinops.domain.progress import ProgressCallback
from twinops.features.clean_gate import clean_and_gate
from twinops.features.embedding import open_embedder
from twinops.features.feast_store import materialize, repo_path
from twinops.features.jobs import FeatureJob
from twinops.features.load import chunk_embed_load
from twinops.features.results import FeatureRunSummary
from twinops.features.vector_store import CHUNKS_ALIAS, VectorStore
from twinops.settings import Settings


def run_features(
    job: FeatureJob, settings: Settings, *, on_progress: ProgressCallback | None = None
) -> FeatureRunSummary:
    """Turn the warehouse into features (contract 2): Qdrant points, Feast tables, a DatasetVersion."""
    from twinops.infra.mongo import connect, warehouse_errors
    from twinops.infra.qdrant import open_qdrant

    started = time.perf_counter()
    db = connect(settings)
    embedder = open_embedder(settings)
    # One Qdrant handle for the whole run: local mode locks its folder to one client. The run's
    # watermark is written last, so a run the warehouse's death ends is redone by the next one.
    with open_qdrant(settings) as client:
        live = VectorStore(client).alias_target(CHUNKS_ALIAS)
        gate = clean_and_gate(job, settings, db=db, live_collection=live, on_progress=on_progress)
        summary = chunk_embed_load(
            job, settings, gate, db=db, client=client, embedder=embedder, on_progress=on_progress
        )
    feast_state = repo_path(settings) / "data" / "registry.db"
    if job.materialize_feast and (
        summary.wrote_anything or summary.alias_switched or not feast_state.exists()
    ):
        with warehouse_errors():
            materialize(settings, db=db)
        summary = summary.model_copy(update={"feast_materialized": True})
    return summary.model_copy(update={"seconds": round(time.perf_counter() - started, 3)})
