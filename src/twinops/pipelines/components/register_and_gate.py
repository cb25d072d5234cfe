# ruff: noqa: B006, PLR0917
# KFP serializes parameter defaults into the component spec (never mutated: B006) and passes
# every input by keyword (PLR0917).
"""The register-and-gate component: register the twin in MLflow and promote it if it passes."""

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
) -> str:
    """Register the model and the reranker in MLflow; promote each to ``champion`` if its gate passes.

    Calls ``twinops.training.registry.register_model`` and ``twinops.training.gate.promote``: the
    model becomes a new version of ``twin-llm`` (tagged with its dataset version ids, training and
    evaluation metrics) under the ``challenger`` alias, and takes ``champion`` when it beats the
    current champion on the gate's metrics (the first version always does). The reranker is
    registered and gated as ``twin-reranker`` the same way.

    Args:
        model: Pointer to the model to register (the quantized twin).
        evaluation: The evaluation report JSON written by ``evaluate``.
        reranker_model: Pointer to the CrossEncoder from ``train_reranker``.
        gate: The ``twin-llm`` promotion gate as a mapping (``{"rules": [{"metric": ...,
            "direction": "lower"}]}``); empty means the library's default gate.
        metrics: The gate decisions (1 = promoted) and the registered versions.
        report: Registered versions, aliases and why each gate passed or held.

    Returns:
        The alias the twin-llm version holds after the gate (``champion`` or ``challenger``).
    """
    import json
    from pathlib import Path

    from twinops.pipelines import artifacts
    from twinops.pipelines.registry_gate import register_and_promote

    settings = artifacts.component_settings()
    llm = artifacts.read_pointer(model)
    ranker = artifacts.read_pointer(reranker_model)
    scores = json.loads(Path(evaluation.path).read_text(encoding="utf-8"))
    summary = register_and_promote(
        llm,
        artifacts.pointer_path(llm, settings),
        scores,
        settings,
        reranker=ranker,
        reranker_folder=artifacts.pointer_path(ranker, settings),
        gate=dict(gate) or None,
    )
    rows = {}
    for decision in (summary.llm, summary.reranker):
        if decision is None:
            continue
        metrics.log_metric(f"{decision.name}.promoted", float(decision.promoted))
        metrics.log_metric(f"{decision.name}.version", float(decision.version))
        rows[f"{decision.name} v{decision.version}"] = f"**{decision.alias}**: {decision.reason}"
    artifacts.write_text(report, artifacts.markdown_table("Registry gate", rows))
    return summary.llm.alias
