"""register-and-gate: real MLflow (sqlite store) and warehouse; the first twin becomes champion,
a worse one stays challenger."""

import json
from pathlib import Path

import pytest

from twinops.domain import DatasetKind, DatasetVersion
from twinops.pipelines.components import register_and_gate


@pytest.fixture
def registry_settings(mongo_settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    from twinops.infra.dataset_versions import DatasetVersionRepository
    from twinops.infra.mongo import connect
    from twinops.settings import get_settings

    monkeypatch.setenv("TWINOPS_MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    get_settings.cache_clear()
    settings = get_settings()
    version = DatasetVersion(kind=DatasetKind.PREFERENCE, name="twin-preference", inputs_hash="abc")
    DatasetVersionRepository(connect(settings)).save(version)
    return settings, version.id


def _run(artifacts, tag: str, perplexity: float, *, llm: Path, reranker: Path, dataset_id: str):
    model = artifacts.pointer(
        "Model",
        f"model-{tag}",
        kind="llm-gptq",
        path=str(llm),
        base_model="tiny",
        dataset_version_ids=[dataset_id],
        stage="dpo",
    )
    ranker = artifacts.pointer(
        "Model",
        f"rr-{tag}",
        kind="reranker",
        path=str(reranker),
        base_model="minilm",
        dataset_version_ids=[dataset_id],
        stage="reranker",
        metrics={"eval_mrr": 0.5},
    )
    evaluation = artifacts.new("Dataset", f"evaluation-{tag}")
    Path(evaluation.path).write_text(json.dumps({"metrics": {"eval_perplexity": perplexity}}))
    metrics, report = artifacts.new("Metrics", f"m-{tag}"), artifacts.new("Markdown", f"r-{tag}")
    alias = register_and_gate.python_func(
        model=model, evaluation=evaluation, reranker_model=ranker, metrics=metrics, report=report
    )
    return alias, metrics, Path(report.path).read_text()


@pytest.mark.slow
def test_first_is_champion_then_the_gate_holds(registry_settings, tiny_llama, bundled_models_dir, artifacts):
    _, dataset_id = registry_settings
    reranker = bundled_models_dir / "all-minilm-l6-v2"
    alias, metrics, report = _run(
        artifacts, "a", 30.0, llm=tiny_llama, reranker=reranker, dataset_id=dataset_id
    )
    assert alias == "champion" and metrics.metadata["twin-llm.promoted"] == 1.0
    assert "twin-reranker" in report
    alias, metrics, report = _run(
        artifacts, "b", 45.0, llm=tiny_llama, reranker=reranker, dataset_id=dataset_id
    )
    assert alias == "challenger" and metrics.metadata["twin-llm.promoted"] == 0.0
    assert "eval_perplexity" in report
