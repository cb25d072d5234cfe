# ruff: noqa: B006, PLR0917
# KFP serializes parameter defaults into the component spec (never mutated: B006) and passes
# every input by keyword (PLR0917).
"""The chunk-embed-load component: chunk, embed and load the cleaned documents into Qdrant."""

from kfp import dsl
from kfp.dsl import HTML, Dataset, Input, Metrics, Output

from twinops.pipelines.images import ImageFamily, image


@dsl.component(base_image=image(ImageFamily.DATA), install_kfp_package=False)
def chunk_embed_load(
    author: str,
    gate: Input[Dataset],
    features: Output[Dataset],
    metrics: Output[Metrics],
    report: Output[HTML],
    options: dict = {},
) -> str:
    """Chunk the cleaned documents, embed the chunks and upsert them into Qdrant.

    Calls ``twinops.features.chunk_embed_load``, the second stage of the feature pipeline: chunks
    go to the collection behind the ``twin_chunks`` alias (one point per chunk, id = chunk id) and
    the run is saved as a ``features`` DatasetVersion whose folder holds ``chunks.jsonl``,
    ``cleaned_documents.jsonl`` and the gate report. Qdrant local mode is opened and closed inside
    this step, so steps take turns on the folder.

    Args:
        author: Full name of the author whose documents are processed; empty means every author.
        gate: The ``GateResult`` written by ``clean_and_gate``.
        options: Extra ``FeatureJob`` fields as a mapping (chunk size, overlap, batch size).
        features: Pointer to the ``features`` DatasetVersion (id, folder, chunk counts).
        metrics: Chunks upserted and deleted, documents and chunks in the features.
        report: The feature run's HTML report (gate outcomes, chunk statistics).

    Returns:
        The ``features`` DatasetVersion id.
    """
    from pathlib import Path

    from twinops.features.jobs import FeatureJob
    from twinops.features.load import chunk_embed_load as run_stage
    from twinops.features.results import GateResult
    from twinops.pipelines import artifacts
    from twinops.pipelines.jobs import validate_job

    settings = artifacts.component_settings()
    job = validate_job(FeatureJob, {"author": author or None, **dict(options)})
    summary = run_stage(job, settings, GateResult.load(Path(gate.path)))
    data = artifacts.summary_dict(summary)
    numbers = {
        key: data[key] for key in ("chunks_upserted", "chunks_deleted", "documents_total", "chunks_total")
    }
    artifacts.write_pointer(
        features,
        kind="features",
        path=summary.artifact_dir,
        settings=settings,
        version_id=summary.version_id,
        new_version=summary.new_version,
        chunks_collection=summary.chunks_collection,
        embedding_model_id=summary.embedding_model_id,
        **numbers,
    )
    artifacts.log_metrics(metrics, numbers)
    artifacts.copy_report(
        report, summary.report_html, title=f"Features {summary.version_id}", fallback=numbers
    )
    return summary.version_id
