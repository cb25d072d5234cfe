# ruff: noqa: B006, PLR0917
# KFP serializes parameter defaults into the component spec (never mutated: B006) and passes
# every input by keyword (PLR0917).
"""The build-datasets component: instruction, preference, golden and reranker sets from features."""

from kfp import dsl
from kfp.dsl import Dataset, Markdown, Metrics, Output

from twinops.pipelines.images import ImageFamily, image


@dsl.component(base_image=image(ImageFamily.DATA), install_kfp_package=False)
def build_datasets(
    instruction: Output[Dataset],
    preference: Output[Dataset],
    golden: Output[Dataset],
    reranker: Output[Dataset],
    metrics: Output[Metrics],
    report: Output[Markdown],
    author: str = "",
    features_version: str = "",
    max_chunks: int = 0,
    options: dict = {},
) -> str:
    """Build the versioned training datasets from a features run.

    Calls ``twinops.datasets.builder.build_datasets``: each dataset is a DatasetVersion (id = hash
    of inputs and config, lineage back to the features run) whose folder holds ``hf/`` and one
    JSONL file per split. An unchanged input gives the same ids, so downstream caching holds.

    Args:
        author: Restrict to this author's chunks; empty means every author in the features run.
        features_version: The ``features`` DatasetVersion id; empty means the latest one.
        max_chunks: Use only the first N chunks (quick runs); 0 means every chunk.
        options: Extra ``DatasetJob`` fields as a mapping (split ratio, generator, budget).
        instruction: Pointer to the instruction dataset (TRL prompt/completion).
        preference: Pointer to the preference dataset (prompt/chosen/rejected).
        golden: Pointer to the golden evaluation set (with its canary string).
        reranker: Pointer to the reranker dataset (query/positive/negatives).
        metrics: Rows per dataset and split, and per source (generator, template).
        report: The dataset versions built, with their ids and sizes, sources and drops.

    Returns:
        The dataset versions as a JSON object ``{kind: version_id}``.
    """
    import json

    from twinops.datasets.builder import build_datasets as run_builder
    from twinops.datasets.jobs import DatasetJob
    from twinops.domain.progress import progress_lines
    from twinops.errors import NotFound
    from twinops.pipelines import artifacts
    from twinops.pipelines.jobs import validate_job

    settings = artifacts.component_settings()
    fields = {**dict(options)}
    if max_chunks:
        fields["max_chunks"] = max_chunks
    if author:
        fields["author"] = author
    if features_version:
        fields["features_version"] = features_version
    # Progress lines in the step's log (and on `twinops run`'s spinner): generation takes minutes.
    lines = progress_lines(lambda line: print(f"build-datasets: {line}", flush=True))
    summary = run_builder(validate_job(DatasetJob, fields), settings, on_progress=lines)
    outputs = {"instruction": instruction, "preference": preference, "golden": golden, "reranker": reranker}
    rows = {}
    for kind, artifact in outputs.items():
        if kind not in summary.versions:
            raise NotFound(f"the dataset build made no {kind} dataset: enable it in the dataset options")
        version_id = summary.versions[kind]
        uri = summary.uris.get(kind) or artifacts.dataset_versions({kind: version_id}, settings)[kind].uri
        splits = dict(summary.split_sizes.get(kind, {}))
        artifacts.write_pointer(
            artifact,
            kind=kind,
            path=uri,
            settings=settings,
            version_id=version_id,
            splits=splits,
            features_version=summary.features_version,
        )
        artifacts.log_metrics(metrics, splits, prefix=f"{kind}.")
        rows[kind] = f"`{version_id}` splits {splits}"
    artifacts.log_metrics(metrics, {"chunks": summary.chunks, "documents": summary.documents})
    for kind, sources in summary.sources.items():
        artifacts.log_metrics(metrics, sources, prefix=f"{kind}.source.")
        rows[f"{kind} sources"] = summary.sources_line(kind)
    rows["generator time"] = f"{summary.generator_seconds:.0f} s"
    rows["drops"] = ", ".join(f"{key}: {value}" for key, value in sorted(summary.drops.items())) or "none"
    artifacts.write_text(
        report, artifacts.markdown_table(f"Dataset versions from {summary.features_version}", rows)
    )
    return json.dumps(dict(summary.versions), sort_keys=True)
