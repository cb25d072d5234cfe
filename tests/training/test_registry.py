"""Registry and gate against a real MLflow (sqlite store) and the real MongoDB wire server.

The gate nominates (``challenger``); it never moves ``champion``, which the release writes (here
``promote_by_hand`` stands in for a release).

No training here: any HF folder with a config.json is a model version (the tiny Llama stands in).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from twinops.domain.versions import DatasetKind
from twinops.errors import NotFound
from twinops.infra.registry import LAST_RELEASE_TAG, REJECTED_TAG, RELEASED_BY_TAG, ReleasePath
from twinops.training import (
    GateConfig,
    MetricRule,
    list_versions,
    load_gate,
    nominate,
    promote_by_hand,
    register_model,
)
from twinops.training.gate import (
    GATES_FILE,
    MANUAL_TAG,
    GateEvidence,
    record_evidence,
    release_without_canary,
)
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
    assert version.version == "1" and version.aliases == ()  # the gate nominates, not registration
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


def _aliases(client) -> dict[str, str]:
    return {alias: str(version) for alias, version in client.get_registered_model(LLM_MODEL).aliases.items()}


def _evidence(challenger: dict, reference: dict, *, name: str = "base", version: str | None = None, **extra):
    return GateEvidence(
        evaluation="evaluation-test",
        golden="golden-test",
        questions=60,
        challenger=challenger,
        reference=reference,
        reference_name=name,
        reference_version=version,
        **extra,
    )


LLM_GATE = GateConfig(rules=[MetricRule(metric="golden_perplexity", direction="lower")])


def test_a_first_llm_version_must_beat_the_base_model(
    training_settings, make_dataset, tiny_llama: Path
) -> None:
    from mlflow import MlflowClient

    client = MlflowClient(training_settings.mlflow_tracking_uri)
    dataset = make_dataset(DatasetKind.PREFERENCE)
    _register(training_settings, tiny_llama, dataset.id, 12.0)
    worse = nominate(
        LLM_MODEL,
        training_settings,
        LLM_GATE,
        evidence=_evidence({"golden_perplexity": 14.0}, {"golden_perplexity": 13.0}),
    )
    assert not worse.nominated and worse.champion_version is None and worse.challenger_version is None
    assert _aliases(client) == {}
    assert "it does not beat baseline 'base'" in worse.reason and "golden_perplexity 14 vs 13" in worse.reason
    # Why is recorded on the version, on the model and as a JSON artifact of a registry run.
    tags = client.get_model_version(LLM_MODEL, "1").tags
    assert tags["gate.decision"] == "not nominated" and tags["gate.compared_to"] == "baseline 'base'"
    assert client.get_registered_model(LLM_MODEL).tags["last_gate"].startswith("v1 not nominated")
    decision = json.loads(
        Path(client.download_artifacts(worse.decision_run_id, "gate/decision.json")).read_text()
    )
    assert decision["nominated"] is False and decision["evidence"]["reference"] == {"golden_perplexity": 13.0}

    better = nominate(
        LLM_MODEL,
        training_settings,
        LLM_GATE,
        evidence=_evidence({"golden_perplexity": 11.0}, {"golden_perplexity": 13.0}),
    )
    assert better.nominated and better.challenger_version == "1" and better.champion_version is None
    assert better.checks[0].improvement == pytest.approx(2.0)
    # The gate never moves champion: only a release (a canary that passed) does.
    assert _aliases(client) == {CHALLENGER: "1"}


def test_a_later_version_is_compared_with_the_champion_rescored_in_the_same_evaluation(
    training_settings, make_dataset, tiny_llama: Path
) -> None:
    from mlflow import MlflowClient

    client = MlflowClient(training_settings.mlflow_tracking_uri)
    dataset = make_dataset(DatasetKind.PREFERENCE)
    _register(training_settings, tiny_llama, dataset.id, 12.0)
    assert nominate(
        LLM_MODEL,
        training_settings,
        LLM_GATE,
        evidence=_evidence({"golden_perplexity": 11.0}, {"golden_perplexity": 13.0}),
    ).nominated
    promote_by_hand(LLM_MODEL, "1", training_settings, reason="its canary passed")  # the release
    # v2's training metrics (eval_perplexity 1.0) look far better; they are not what the gate reads.
    _register(training_settings, tiny_llama, dataset.id, 1.0)
    stale = nominate(
        LLM_MODEL,
        training_settings,
        LLM_GATE,
        evidence=_evidence({"golden_perplexity": 9.0}, {"golden_perplexity": 13.0}),
    )
    assert not stale.nominated and "'champion' is v1" in stale.reason and "evaluate again" in stale.reason

    rescored = _evidence(
        {"golden_perplexity": 10.5}, {"golden_perplexity": 10.0}, name="champion", version="1"
    )
    record_evidence(LLM_MODEL, "2", rescored, training_settings)  # what the evaluate step attaches
    kept = nominate(LLM_MODEL, training_settings, LLM_GATE)  # reads the attached evidence
    assert not kept.nominated and kept.champion_version == "1" and kept.reference == "champion v1"
    assert CHALLENGER not in client.get_registered_model(LLM_MODEL).aliases

    _register(training_settings, tiny_llama, dataset.id, 5.0)
    record_evidence(
        LLM_MODEL,
        "3",
        _evidence({"golden_perplexity": 9.0}, {"golden_perplexity": 10.0}, name="champion", version="1"),
        training_settings,
    )
    won = nominate(LLM_MODEL, training_settings, LLM_GATE)
    assert won.nominated and won.challenger_version == "3" and won.champion_version == "1"
    assert _aliases(client) == {CHAMPION: "1", CHALLENGER: "3"}


def test_the_reranker_gate_refuses_a_reranker_worse_than_cosine_or_within_noise(
    training_settings, make_dataset, tiny_llama: Path
) -> None:
    dataset = make_dataset(DatasetKind.RERANKER)
    register_model(
        RERANKER_MODEL,
        tiny_llama,
        training_settings,
        base_model="bundled:all-minilm-l6-v2",
        dataset_version_ids=[dataset.id],
        metrics={"val_mrr": 0.99},  # training-time numbers do not promote
    )
    gate = load_gate(None, RERANKER_MODEL)  # the project's gate: MRR beyond noise and hit@5
    cosine = {"golden_mrr": 0.55, "golden_hit_at_5": 0.83}
    worse = _evidence({"golden_mrr": 0.09, "golden_hit_at_5": 0.17}, cosine, name="cosine")
    result = nominate(RERANKER_MODEL, training_settings, gate, evidence=worse)
    assert not result.nominated and result.challenger_version is None
    assert "does not beat baseline 'cosine'" in result.reason

    noisy = _evidence(
        {"golden_mrr": 0.60, "golden_hit_at_5": 0.85},
        cosine,
        name="cosine",
        improvement_ci={"golden_mrr": (-0.04, 0.14), "golden_hit_at_5": (-0.05, 0.09)},
    )
    result = nominate(RERANKER_MODEL, training_settings, gate, evidence=noisy)
    assert not result.nominated and "within noise" in result.reason

    # Better on the extractive questions, but without the questions people word their own way:
    # the metric is missing, and nothing is nominated on it.
    clear = noisy.model_copy(update={"improvement_ci": {"golden_mrr": (0.02, 0.14)}})
    result = nominate(RERANKER_MODEL, training_settings, gate, evidence=clear)
    assert not result.nominated and "golden_paraphrased_mrr is missing" in result.reason

    # Better on the extractive questions and worse beyond noise on the paraphrased ones: refused.
    paraphrased = {"golden_paraphrased_mrr": 0.70}
    losing = clear.model_copy(
        update={
            "challenger": {**clear.challenger, "golden_paraphrased_mrr": 0.58},
            "reference": {**clear.reference, **paraphrased},
            "improvement_ci": {"golden_mrr": (0.02, 0.14), "golden_paraphrased_mrr": (-0.2, -0.03)},
        }
    )
    result = nominate(RERANKER_MODEL, training_settings, gate, evidence=losing)
    assert not result.nominated and "worse beyond noise" in result.reason

    # Not worse beyond noise there (a lower mean within noise is no loss): nominated.
    holding = losing.model_copy(
        update={"improvement_ci": {"golden_mrr": (0.02, 0.14), "golden_paraphrased_mrr": (-0.2, 0.05)}}
    )
    result = nominate(RERANKER_MODEL, training_settings, gate, evidence=holding)
    assert result.nominated and "beyond noise" in result.reason
    assert "golden_paraphrased_mrr" in result.reason and "no loss beyond noise" in result.reason


def test_a_missing_metric_blocks_promotion(training_settings, make_dataset, tiny_llama: Path) -> None:
    from mlflow import MlflowClient

    dataset = make_dataset(DatasetKind.PREFERENCE)
    _register(training_settings, tiny_llama, dataset.id, 9.0)
    no_evidence = nominate(LLM_MODEL, training_settings)
    assert not no_evidence.nominated and "no evaluation evidence" in no_evidence.reason

    gate = GateConfig(
        rules=[
            MetricRule(metric="golden_perplexity", direction="lower"),
            MetricRule(metric="golden_judge_accuracy", direction="higher"),
        ],
        require="any",
    )
    # The perplexity rule passes and `any` would do, but the judge never scored the base model.
    evidence = _evidence(
        {"golden_perplexity": 9.0, "golden_judge_accuracy": 2.5},
        {"golden_perplexity": 12.0, "golden_judge_accuracy": math.nan},
    )
    result = nominate(LLM_MODEL, training_settings, gate, evidence=evidence)
    assert not result.nominated and [check.passed for check in result.checks] == [True, False]
    assert "golden_judge_accuracy is missing on the baseline 'base'" in result.reason
    assert result.checks[1].reference is None  # no 0.0 standing in for it
    client = MlflowClient(training_settings.mlflow_tracking_uri)
    assert _aliases(client) == {}


def test_a_version_whose_canary_was_rolled_back_is_never_nominated_again(
    training_settings, make_dataset, tiny_llama: Path
) -> None:
    from mlflow import MlflowClient

    client = MlflowClient(training_settings.mlflow_tracking_uri)
    dataset = make_dataset(DatasetKind.PREFERENCE)
    _register(training_settings, tiny_llama, dataset.id, 12.0)
    better = _evidence({"golden_perplexity": 11.0}, {"golden_perplexity": 13.0})
    assert nominate(LLM_MODEL, training_settings, LLM_GATE, evidence=better).nominated
    # What the rollout's rollback writes (twinops.rollout.tracking.MlflowRecorder.release).
    client.set_model_version_tag(LLM_MODEL, "1", REJECTED_TAG, "rollout: errors 25.0% > 2.0%")
    client.delete_registered_model_alias(LLM_MODEL, CHALLENGER)

    again = nominate(LLM_MODEL, training_settings, LLM_GATE, evidence=better)

    assert not again.nominated and "tagged 'rejected'" in again.reason and "errors 25.0%" in again.reason
    assert _aliases(client) == {}


def test_a_manual_promotion_is_recorded_as_such(training_settings, make_dataset, tiny_llama: Path) -> None:
    from mlflow import MlflowClient

    from twinops.errors import ConfigError

    client = MlflowClient(training_settings.mlflow_tracking_uri)
    dataset = make_dataset(DatasetKind.PREFERENCE)
    _register(training_settings, tiny_llama, dataset.id, 12.0)
    with pytest.raises(ConfigError, match="needs a reason"):
        promote_by_hand(LLM_MODEL, "1", training_settings, reason=" ")
    result = promote_by_hand(LLM_MODEL, "1", training_settings, reason="hotfix approved by Ada")
    assert result.champion_version == "1" and "by hand" in result.reason
    tags = client.get_model_version(LLM_MODEL, "1").tags
    assert "hotfix approved by Ada" in tags[MANUAL_TAG] and tags[RELEASED_BY_TAG] == ReleasePath.MANUAL
    assert _aliases(client) == {CHAMPION: "1"}  # the REST store answers strings, sqlite ints


def test_a_model_without_a_canary_is_released_by_its_gate_never_as_a_manual_override(
    training_settings, make_dataset, tiny_llama: Path
) -> None:
    from mlflow import MlflowClient

    client = MlflowClient(training_settings.mlflow_tracking_uri)
    _register(training_settings, tiny_llama, make_dataset(DatasetKind.PREFERENCE).id, 12.0)
    result = release_without_canary(LLM_MODEL, "1", training_settings, reason="no canary for it")
    assert result.champion_version == "1" and "without a canary" in result.reason
    tags = client.get_model_version(LLM_MODEL, "1").tags
    assert tags[RELEASED_BY_TAG] == ReleasePath.NO_CANARY and MANUAL_TAG not in tags
    assert client.get_registered_model(LLM_MODEL).tags[LAST_RELEASE_TAG].startswith("v1 (no-canary)")
    with pytest.raises(NotFound, match="has no version 9"):
        promote_by_hand(LLM_MODEL, "9", training_settings, reason="typo")


def test_one_source_of_gate_settings() -> None:
    shipped = Path(__file__).resolve().parents[2] / "configs" / "training" / "gate.yaml"
    for name in (LLM_MODEL, RERANKER_MODEL):
        assert load_gate(shipped, name) == load_gate(None, name)
    assert shipped.resolve() == GATES_FILE.resolve()


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
        nominate(LLM_MODEL, training_settings)

    dataset = make_dataset(DatasetKind.PREFERENCE)
    _register(training_settings, tiny_llama, dataset.id, 10.0)
    with pytest.raises(NotFound) as error:
        nominate(LLM_MODEL, training_settings, version="7")
    assert "has no version 7" in str(error.value) and "\n" not in str(error.value)
    promote_by_hand(LLM_MODEL, "1", training_settings, reason="released")
    better = _evidence({"golden_perplexity": 9.0}, {"golden_perplexity": 12.0})
    already = nominate(LLM_MODEL, training_settings, LLM_GATE, evidence=better)
    assert not already.nominated and "already 'champion'" in already.reason


@pytest.mark.parametrize(
    ("direction", "interval", "passes", "says"),
    [
        ("higher", (-0.2, 0.05), True, "no loss beyond noise"),  # lower mean, within noise
        ("higher", (-0.2, -0.01), False, "worse beyond noise"),
        ("lower", (0.01, 0.3), False, "worse beyond noise"),  # e.g. perplexity up beyond noise
        ("lower", (-0.3, 0.01), True, "no loss beyond noise"),
        ("higher", None, False, "no confidence interval"),
    ],
)
def test_a_no_loss_rule_is_a_guard_not_a_goal(direction, interval, passes, says) -> None:
    from twinops.training.gate import check_rule

    rule = MetricRule(metric="golden_paraphrased_mrr", direction=direction, no_loss=True)
    evidence = _evidence(
        {"golden_paraphrased_mrr": 0.60},
        {"golden_paraphrased_mrr": 0.62},
        name="cosine",
        improvement_ci={"golden_paraphrased_mrr": interval} if interval else {},
    )
    check = check_rule(rule, evidence)
    assert check.passed is passes and says in check.why


def test_a_no_loss_rule_takes_no_margin() -> None:
    from twinops.errors import ConfigError
    from twinops.training.gate import parse_gate

    raw = {
        "rules": [
            {"metric": "golden_paraphrased_mrr", "direction": "higher", "no_loss": True, "min_delta": 0.1}
        ]
    }
    with pytest.raises(ConfigError) as error:
        parse_gate(raw, RERANKER_MODEL, "gates.yaml")
    assert "no_loss" in str(error.value) and len(str(error.value).splitlines()) == 1
