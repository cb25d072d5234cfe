"""register-and-gate: real MLflow (sqlite store) and warehouse. A twin that beats the base model
is nominated (challenger), never champion: its release does that; one that does not beat the
champion re-scored is not nominated; a reranker worse than cosine is not nominated (nor released)."""

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


def _evidence(challenger: dict, reference: dict, name: str, version: str | None = None) -> dict:
    # The paired interval the gate needs for a perplexity gain beyond noise, on the gain's side.
    gain = challenger.get("golden_perplexity", 0.0) - reference.get("golden_perplexity", 0.0)
    return {
        "improvement_ci": {"golden_perplexity": (gain - 1.0, gain + 1.0) if gain else (-1.0, 1.0)},
        "evaluation": "evaluation-run",
        "golden": "golden-1",
        "questions": 77,
        "challenger": challenger,
        "reference": reference,
        "reference_name": name,
        "reference_version": version,
    }


def _run(artifacts, tag: str, evaluation_json: dict, *, llm: Path, reranker: Path, dataset_id: str):
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
        metrics={"val_mrr": 0.99},  # training-time numbers promote nothing
    )
    evaluation = artifacts.new("Dataset", f"evaluation-{tag}")
    Path(evaluation.path).write_text(json.dumps(evaluation_json))
    metrics, report = artifacts.new("Metrics", f"m-{tag}"), artifacts.new("Markdown", f"r-{tag}")
    alias = register_and_gate.python_func(
        model=model, evaluation=evaluation, reranker_model=ranker, metrics=metrics, report=report
    )
    return alias, metrics, Path(report.path).read_text()


@pytest.mark.slow
def test_each_model_must_beat_what_the_same_evaluation_scored_beside_it(
    registry_settings, tiny_llama, bundled_models_dir, artifacts
) -> None:
    _, dataset_id = registry_settings
    reranker = bundled_models_dir / "all-minilm-l6-v2"
    twin = {"golden_perplexity": 30.0, "golden_style_score": 0.7}
    base = {"golden_perplexity": 35.0, "golden_style_score": 0.4}
    cosine = {"golden_mrr": 0.56, "golden_hit_at_5": 0.83}
    worse_ranker = {"golden_mrr": 0.09, "golden_hit_at_5": 0.17}
    first = {
        "metrics": {"twin-llm": twin, "twin-reranker": worse_ranker},
        "evidence": {
            "twin-llm": _evidence(twin, base, "base"),
            "twin-reranker": _evidence(worse_ranker, cosine, "cosine"),
        },
    }
    alias, metrics, report = _run(
        artifacts, "a", first, llm=tiny_llama, reranker=reranker, dataset_id=dataset_id
    )
    assert alias == "challenger" and metrics.metadata["twin-llm.nominated"] == 1.0
    assert metrics.metadata["twin-reranker.nominated"] == 0.0 and "does not beat baseline 'cosine'" in report

    from mlflow import MlflowClient

    from twinops.training.gate import promote_by_hand

    client = MlflowClient(registry_settings[0].mlflow_tracking_uri)
    assert "champion" not in client.get_registered_model("twin-llm").aliases  # only a release moves it
    promote_by_hand("twin-llm", "1", registry_settings[0], reason="its canary passed")  # the release
    tags = client.get_model_version("twin-reranker", "1").tags
    assert tags["metric.golden_mrr"] == "0.09" and "gate.evidence" in tags  # its own metrics, recorded

    worse_twin = {"golden_perplexity": 33.0, "golden_style_score": 0.7}
    second = {
        "metrics": {"twin-llm": worse_twin},
        "evidence": {"twin-llm": _evidence(worse_twin, twin, "champion", version="1")},
    }
    alias, metrics, report = _run(
        artifacts, "b", second, llm=tiny_llama, reranker=reranker, dataset_id=dataset_id
    )
    assert alias == "none" and metrics.metadata["twin-llm.nominated"] == 0.0
    assert "golden_perplexity 33 vs 30" in report

    # Evidence against the base model no longer counts once a champion exists.
    alias, _, report = _run(artifacts, "c", first, llm=tiny_llama, reranker=reranker, dataset_id=dataset_id)
    assert alias == "none" and "'champion' is v1" in report

    # No evidence (the evaluation measured nothing for it): nothing is nominated.
    alias, _, report = _run(
        artifacts, "d", {"metrics": {}}, llm=tiny_llama, reranker=reranker, dataset_id=dataset_id
    )
    assert alias == "none" and "no evaluation evidence" in report
