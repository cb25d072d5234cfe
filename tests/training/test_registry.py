"""Registry and promotion gate against a real MLflow (sqlite store) and the real MongoDB wire server.

No training here: any HF folder with a config.json is a model version (the tiny Llama stands in).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from twinops.domain.versions import DatasetKind
from twinops.errors import ConfigError, NotFound
from twinops.training import GateConfig, MetricRule, list_versions, promote, record_metrics, register_model
from twinops.training.registry import CHALLENGER, CHAMPION, LLM_MODEL, RERANKER_MODEL


def _register(settings, model_dir: Path, dataset_id: str, perplexity: float):
    return register_model(
        LLM_MODEL,
        model_dir,
        settings,
        base_model="bundled:smollm2-135m-instruct",
        dataset_version_ids=[dataset_id],
        metrics={"eval_perplexity": perplexity},
        stage="dpo",
    )


def test_model_version_links_to_its_dataset_version(
    training_settings, make_dataset, tiny_llama: Path
) -> None:
    from mlflow import MlflowClient

    from twinops.infra.dataset_versions import DatasetVersionRepository
    from twinops.infra.mongo import connect

    dataset = make_dataset(DatasetKind.PREFERENCE)
    version = _register(training_settings, tiny_llama, dataset.id, 12.0)
    assert version.version == "1" and version.aliases == (CHALLENGER,)
    assert version.dataset_version_ids == (dataset.id,) and version.source_uri == str(tiny_llama.resolve())
    assert version.metrics["eval_perplexity"] == 12.0

    mlflow_version = MlflowClient(training_settings.mlflow_tracking_uri).get_model_version(LLM_MODEL, "1")
    assert mlflow_version.tags["dataset_version_ids"] == dataset.id
    # The link resolves back to the dataset version (and its lineage) in the warehouse.
    linked = DatasetVersionRepository(connect(training_settings)).get(
        mlflow_version.tags["dataset_version_ids"]
    )
    assert linked.uri == dataset.uri
    assert [v.version for v in list_versions(training_settings)] == ["1"]


def test_gate_promotes_a_better_challenger_and_keeps_a_worse_one(
    training_settings, make_dataset, tiny_llama: Path
) -> None:
    from mlflow import MlflowClient

    client = MlflowClient(training_settings.mlflow_tracking_uri)
    dataset = make_dataset(DatasetKind.PREFERENCE)

    _register(training_settings, tiny_llama, dataset.id, 12.0)
    first = promote(LLM_MODEL, training_settings)
    assert first.promoted and first.champion_version == "1" and "first champion" in first.reason

    _register(training_settings, tiny_llama, dataset.id, 10.0)
    better = promote(LLM_MODEL, training_settings)
    assert better.promoted and better.champion_version == "2" and better.previous_champion_version == "1"
    assert better.checks[0].improvement == pytest.approx(2.0)
    assert str(client.get_model_version_by_alias(LLM_MODEL, CHAMPION).version) == "2"
    assert CHALLENGER not in client.get_registered_model(LLM_MODEL).aliases

    _register(training_settings, tiny_llama, dataset.id, 11.0)
    worse = promote(LLM_MODEL, training_settings)
    assert not worse.promoted and worse.champion_version == "2"
    assert str(client.get_model_version_by_alias(LLM_MODEL, CHAMPION).version) == "2"
    assert str(client.get_model_version_by_alias(LLM_MODEL, CHALLENGER).version) == "3"
    # Why is recorded on the version, on the model and as a JSON artifact of a registry run.
    tags = client.get_model_version(LLM_MODEL, "3").tags
    assert tags["gate.decision"] == "rejected" and "eval_perplexity 11 vs 10" in tags["gate.reason"]
    assert "does not beat" in client.get_model_version(LLM_MODEL, "3").description
    assert client.get_registered_model(LLM_MODEL).tags["last_gate"].startswith("v3 rejected")
    decision = json.loads(
        Path(client.download_artifacts(worse.decision_run_id, "gate/decision.json")).read_text()
    )
    assert decision["promoted"] is False and decision["checks"][0]["champion"] == 10.0


def test_gate_margins_and_direction(training_settings, make_dataset, tiny_llama: Path) -> None:
    dataset = make_dataset(DatasetKind.RERANKER)

    def register(mrr: float) -> None:
        register_model(
            RERANKER_MODEL,
            tiny_llama,
            training_settings,
            base_model="bundled:all-minilm-l6-v2",
            dataset_version_ids=[dataset.id],
            metrics={"eval_mrr": mrr},
        )

    register(0.50)
    promote(RERANKER_MODEL, training_settings)
    register(0.52)  # higher is better, but below the 5% relative margin
    strict = GateConfig(rules=[MetricRule(metric="eval_mrr", direction="higher", min_relative=0.05)])
    assert not promote(RERANKER_MODEL, training_settings, strict).promoted
    record_metrics(RERANKER_MODEL, "2", {"eval_mrr": 0.60}, training_settings)  # e.g. a later evaluation
    result = promote(RERANKER_MODEL, training_settings, strict)
    assert result.promoted and result.checks[0].relative_improvement == pytest.approx(0.2)


def test_bad_input_is_one_line_and_registers_nothing(
    training_settings, make_dataset, tiny_llama: Path
) -> None:
    from mlflow import MlflowClient

    client = MlflowClient(training_settings.mlflow_tracking_uri)
    with pytest.raises(NotFound, match="preference-doesnotexist"):
        _register(training_settings, tiny_llama, "preference-doesnotexist", 10.0)
    with pytest.raises(NotFound, match=r"config\.json"):
        _register(training_settings, tiny_llama.parent, "preference-doesnotexist", 10.0)
    assert client.search_registered_models() == []

    with pytest.raises(NotFound, match="registered model 'twin-llm' does not exist"):
        promote(LLM_MODEL, training_settings)

    dataset = make_dataset(DatasetKind.PREFERENCE)
    _register(training_settings, tiny_llama, dataset.id, 10.0)
    promote(LLM_MODEL, training_settings)  # v1 champion; the challenger alias is consumed
    with pytest.raises(NotFound) as error:
        promote(LLM_MODEL, training_settings)
    assert "alias 'challenger' does not exist" in str(error.value) and "\n" not in str(error.value)

    _register(training_settings, tiny_llama, dataset.id, 9.0)
    gate = GateConfig(rules=[MetricRule(metric="judge_accuracy", direction="higher")])
    with pytest.raises(ConfigError, match="metric 'judge_accuracy' is missing"):
        promote(LLM_MODEL, training_settings, gate)
    # Nothing moved and nothing was recorded for the refused comparison.
    assert str(client.get_model_version_by_alias(LLM_MODEL, CHAMPION).version) == "1"
    assert "gate.decision" not in client.get_model_version(LLM_MODEL, "2").tags
