"""The feast-materialize component: publish the latest features to the Feast online store."""

from kfp import dsl
from kfp.dsl import Dataset, Input, Markdown, Metrics, Output

from twinops.pipelines.images import ImageFamily, image


@dsl.component(base_image=image(ImageFamily.DATA), install_kfp_package=False)
def feast_materialize(
    features: Input[Dataset],
    metrics: Output[Metrics],
    report: Output[Markdown],
) -> str:
    """Apply the Feast feature repo and materialize the feature state into the online store.

    Calls ``twinops.features.materialize``, the last stage of the feature pipeline: document and
    author statistics are written to the offline store (parquet), ``feast apply`` registers the
    feature views and they are materialized to the online store (Redis on a cluster, SQLite under
    TWINOPS_HOME otherwise), so retrieval and training read the same features.

    Args:
        features: Pointer written by ``chunk_embed_load`` to the ``features`` DatasetVersion.
        metrics: Documents and authors materialized.
        report: The feature views and the time window materialized.

    Returns:
        The ``features`` DatasetVersion id, for the training side.
    """
    from twinops.features.feast_store import materialize
    from twinops.pipelines import artifacts

    settings = artifacts.component_settings()
    upstream = artifacts.read_pointer(features)
    stats = artifacts.summary_dict(materialize(settings))
    artifacts.log_metrics(metrics, stats)
    artifacts.write_text(
        report, artifacts.markdown_table(f"Feast materialization of {upstream['version_id']}", stats)
    )
    return upstream["version_id"]
