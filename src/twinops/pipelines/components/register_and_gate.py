# ruff: noqa: B006, PLR0917
# KFP serializes parameter defaults into the component spec (never mutated: B006) and passes
# every input by keyword (PLR0917).
"""The register-and-gate component: register the twin in MLflow and nominate it if it passes."""

from kfp import dsl
from kfp.dsl import Dataset, Input, Markdown, Metrics, Model, Output

from twinops.pipelines.images import ImageFamily, image


@dsl.component(base_image=image(ImageFamily.DATA), install_kfp_package=False)
def register_and_gate(
    model: Input[Model],
    evaluation: Input[Dataset],
    reranker_model: Input[Model],
    metrics: Output[Metrics],
    report: Output[Markdown],
    gate: dict = {},
    author: str = "",
) -> str:
    """Register the twin and the reranker in MLflow; nominate each (``challenger``) only if it earns it.

    Calls ``twinops.training.registry.register_model`` and ``twinops.training.gate.nominate``: the
    twin becomes a new version of the author's twin (``twin-llm`` for the default author,
    ``twin-llm-<author>`` for another: ``twinops.domain.twins``), pointing at its merged model and
    at its LoRA adapter on the shared base (tags ``adapter_dir``, ``base_model``), and the reranker
    of ``twin-reranker``, each tagged with its dataset versions, its training metrics and its own
    evaluation metrics (``golden_*``:
    perplexity and style for the twin, hit@5 and MRR for the reranker). Each takes ``challenger``
    only when it beats, in the evaluate step's same run, the champion re-scored, or the baseline
    when there is none (the base model; cosine-only retrieval). Missing metrics nominate nothing.
    The gates are the project's (``configs/training/gate.yaml``). This step never moves the twin's
    ``champion``: its release does, after a canary (the deployment pipeline). The reranker has no
    canary, so a nominated reranker is released here.

    Args:
        model: Pointer to the model to register (the quantized twin).
        evaluation: The evaluation JSON written by ``evaluate`` (metrics and gate evidence).
        reranker_model: Pointer to the reranker from ``train_reranker``.
        gate: A twin gate replacing the project's (``{"rules": [{"metric": ...,
            "direction": "lower"}]}``); empty means the project's gate.
        author: The author whose twin this is (empty: the default author's, ``twin-llm``).
        metrics: The gate decisions (1 = nominated) and the registered versions.
        report: Registered versions, aliases and why each gate passed or held.

    Returns:
        The alias the twin's version holds after the gate (``challenger``, or ``none``).
    """
    import json
    from pathlib import Path

    from twinops.domain.twins import twin_model_name
    from twinops.pipelines import artifacts
    from twinops.pipelines.registry_gate import register_and_nominate

    settings = artifacts.component_settings()
    llm = artifacts.read_pointer(model)
    ranker = artifacts.read_pointer(reranker_model)
    scores = json.loads(Path(evaluation.path).read_text(encoding="utf-8"))
    summary = register_and_nominate(
        llm,
        artifacts.pointer_path(llm, settings),
        scores,
        settings,
        reranker=ranker,
        reranker_folder=artifacts.pointer_path(ranker, settings),
        gate=dict(gate) or None,
        twin=twin_model_name(author),
    )
    rows = {}
    for decision in (summary.llm, summary.reranker):
        if decision is None:
            continue
        metrics.log_metric(f"{decision.name}.nominated", float(decision.nominated))
        metrics.log_metric(f"{decision.name}.version", float(decision.version))
        rows[f"{decision.name} v{decision.version}"] = (
            f"**{decision.alias or 'no alias'}**: {decision.reason}"
        )
    artifacts.write_text(report, artifacts.markdown_table("Registry gate", rows))
    return summary.llm.alias or "none"
