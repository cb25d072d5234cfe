# ruff: noqa: B006
# KFP serializes parameter defaults into the component spec (never mutated: B006).
"""The fit-drift-reference component: the registered twin's drift detectors, fitted and saved beside it."""

from kfp import dsl
from kfp.dsl import Dataset, Input, Markdown, Metrics, Output

from twinops.pipelines.images import ImageFamily, image


@dsl.component(base_image=image(ImageFamily.DATA), install_kfp_package=False)
def fit_drift_reference(
    registered: Input[Metrics],
    reference: Output[Dataset],
    report: Output[Markdown],
    options: dict = {},
    author: str = "",
) -> str:
    """Fit the drift detectors of the author's twin version just registered, and save them beside it.

    Calls ``twinops.monitoring.fit.fit_reference`` on the version that ``register_and_gate``
    registered (read from its metrics, ``<twin>.version``; the twin is ``twin-llm`` for the default
    author, ``twin-llm-<author>`` for another, ``twinops.domain.twins``): the queries and answers of the
    datasets it was trained on and the chunks of their feature version are embedded with the
    project's embedder, reduced, and evidently's embedding drift detectors are calibrated for the
    online batch size. The fitted reference is saved under ``TWINOPS_HOME/drift/references/<id>``,
    logged as MLflow artifacts of the version's run (``drift/<id>``) and named by the version tag
    ``drift_reference``, so ``twinops drift serve --reference latest`` (or the version number)
    reads it back instead of fitting it. CPU only: MiniLM over at most ``max_reference`` texts per
    space.

    Args:
        registered: The ``metrics`` of ``register_and_gate`` (its ``<twin>.version`` names the
            registered version).
        options: ``DriftConfig`` fields replacing the project's defaults (``max_reference``,
            ``batch_size``, ``evidently_methods``, ...); the defaults are what ``drift serve`` uses,
            so a reference fitted with them is found there as it is.
        author: The author whose twin was registered (empty: the default author's, ``twin-llm``).
        reference: Pointer to the fitted reference folder (id, model version, texts per space).
        report: The reference, its spaces and its detectors.

    Returns:
        The reference id (``drift-…``), also the version's ``drift_reference`` tag.
    """
    from twinops.domain.twins import twin_model_name
    from twinops.errors import NotFound
    from twinops.monitoring.config import load_drift_config
    from twinops.monitoring.fit import fit_reference
    from twinops.pipelines import artifacts

    settings = artifacts.component_settings()
    twin = twin_model_name(author)
    version = registered.metadata.get(f"{twin}.version")
    if version is None:
        raise NotFound(
            f"the registered metrics name no {twin}.version: wire this step to register_and_gate's metrics"
        )
    config = load_drift_config(None, **dict(options))
    version = str(int(version))  # metrics are floats
    fitted, detectors = fit_reference(settings, version, config, twin=twin)
    artifacts.write_pointer(
        reference,
        kind="drift-reference",
        path=fitted.folder,
        settings=settings,
        reference_id=fitted.id,
        model_name=twin,
        model_version=version,
        dataset_version_ids=list(fitted.info.dataset_version_ids),
        spaces=fitted.info.spaces,
    )
    rows = {"reference": f"`{fitted.id}` beside {twin} v{version}"}
    for space, found in detectors.items():
        names = ", ".join(d.name for d in found.detectors)
        rows[space] = f"{fitted.info.spaces[space]} texts; {names}"
    artifacts.write_text(report, artifacts.markdown_table("Drift reference", rows))
    return fitted.id
