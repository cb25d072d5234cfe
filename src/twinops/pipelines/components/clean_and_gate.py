# ruff: noqa: B006, PLR0917
# KFP serializes parameter defaults into the component spec (never mutated: B006) and passes
# every input by keyword (PLR0917).
"""The clean-and-gate component: clean the warehouse documents and drop what fails the gates."""

from kfp import dsl
from kfp.dsl import HTML, Dataset, Input, Metrics, Output

from twinops.pipelines.images import ImageFamily, image


@dsl.component(base_image=image(ImageFamily.DATA), install_kfp_package=False)
def clean_and_gate(
    author: str,
    crawl: Input[Dataset],
    gate: Output[Dataset],
    metrics: Output[Metrics],
    gate_report: Output[HTML],
    options: dict = {},
) -> int:
    """Clean the author's documents and pass them through the quality, language and dedup gates.

    Calls ``twinops.features.clean_and_gate``, the first stage of the feature pipeline: documents
    changed in the warehouse since the last feature run are cleaned, checked for size, language,
    PII and quality, and exact and near duplicates are dropped. The decisions (with the cleaned
    documents) are this step's ``gate`` dataset, which ``chunk_embed_load`` reads.

    Args:
        author: Full name of the author whose documents are processed; empty means every author.
        crawl: Pointer written by ``ingest`` (orders this step after the crawl; lineage).
        options: Extra ``FeatureJob`` fields as a mapping (gate thresholds, chunk sizes).
        gate: The ``GateResult`` JSON: one decision per processed document, cleaned text included.
        metrics: Documents seen, kept and rejected per gate.
        gate_report: The gate report: why each rejected document was dropped.

    Returns:
        The number of documents that passed the gates.
    """
    from pathlib import Path

    from twinops.features.clean_gate import clean_and_gate as run_stage
    from twinops.features.jobs import FeatureJob
    from twinops.pipelines import artifacts
    from twinops.pipelines.jobs import validate_job

    settings = artifacts.component_settings()
    upstream = artifacts.read_pointer(crawl)
    job = validate_job(FeatureJob, {"author": author or None, **dict(options)})
    result = run_stage(job, settings)
    # Computed fields (content hashes) are derived on load; writing them would fail validation.
    Path(gate.path).parent.mkdir(parents=True, exist_ok=True)
    Path(gate.path).write_text(result.model_dump_json(exclude_computed_fields=True), encoding="utf-8")
    counts = result.counts.model_dump(mode="json")
    gate.metadata.update(
        {"scope": result.scope, "full": result.full, "crawl_run_id": upstream.get("run_id"), "counts": counts}
    )
    artifacts.log_metrics(metrics, counts)
    rejected = {f"rejected: {reason}": count for reason, count in counts["rejected"].items()}
    artifacts.copy_report(
        gate_report,
        None,
        title=f"Gate report ({result.scope})",
        fallback={
            "processed": counts["processed"],
            "kept": counts["kept"],
            "unchanged": counts["unchanged"],
            "deleted": counts["deleted"],
            "full run": result.full_reason or "no",
            **rejected,
        },
    )
    return int(counts["kept"])
