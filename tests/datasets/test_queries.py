"""Questions users asked (the drift trigger's JSONL) become instructions the author's passages answer.

Real MongoDB, local Qdrant and the real MiniLM (``feature_run``); the extractive generator.
"""

import json
from collections import Counter
from pathlib import Path

import pytest
from datasets import load_from_disk

from twinops.datasets.builder import build_datasets
from twinops.datasets.jobs import DatasetJob
from twinops.errors import ConfigError
from twinops.settings import Settings

EXTRACTIVE = DatasetJob(generator="extractive", log_to_mlflow=False, reranker=False)
ON_TOPIC = {
    "How do resource quotas keep one team's training job from starving a shared Kubernetes cluster?": (
        "Start with one namespace per team"
    ),
    "Why would you fine-tune a small model every week and compare it with the champion?": (
        "Fine-tuning a small model is cheap enough"
    ),
}
OFF_TOPIC = "What is a good recipe for a sourdough starter with rye flour?"


def _rows(summary) -> list[dict]:
    instruction = load_from_disk(str(Path(summary.uris["instruction"]) / "hf"))
    return [row for split in instruction.values() for row in split]


@pytest.mark.slow
def test_user_questions_are_answered_by_the_closest_passage_or_dropped(
    feature_run, dataset_settings: Settings
) -> None:
    feature_run()
    # Relative to TWINOPS_HOME, where the drift trigger saves them.
    path = dataset_settings.home / "drift" / "data" / "retrain-1.jsonl"
    path.parent.mkdir(parents=True)
    lines = [json.dumps({"text": q}) for q in [*ON_TOPIC, OFF_TOPIC]] + [json.dumps(next(iter(ON_TOPIC)))]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")

    plain = build_datasets(EXTRACTIVE, dataset_settings)
    with_queries = build_datasets(
        EXTRACTIVE.model_copy(update={"queries": "drift/data/retrain-1.jsonl"}), dataset_settings
    )

    asked = {row["prompt"][0]["content"]: row["completion"][0]["content"] for row in _rows(with_queries)}
    for question, passage in ON_TOPIC.items():
        assert asked[question].startswith(passage), "answered by the author's own closest passage"
    assert OFF_TOPIC not in asked
    sources = {row["source"] for row in _rows(with_queries) if row["prompt"][0]["content"] in ON_TOPIC}
    assert sources == {"query"}, "a user's question is counted as such, not as a template's"
    assert with_queries.drops["instruction:query_unmatched"] == 1
    assert with_queries.versions["instruction"] != plain.versions["instruction"]
    assert not set(ON_TOPIC) & {row["prompt"][0]["content"] for row in _rows(plain)}


def test_a_missing_queries_file_is_one_clear_line(feature_run, dataset_settings: Settings) -> None:
    from twinops.datasets.corpus import load_corpus
    from twinops.datasets.queries import query_instructions
    from twinops.infra.dataset_versions import DatasetVersionRepository
    from twinops.infra.mongo import connect

    feature_run(index=False)
    corpus = load_corpus(DatasetVersionRepository(connect(dataset_settings)))
    job = EXTRACTIVE.model_copy(update={"queries": "drift/data/missing.jsonl"})
    with pytest.raises(ConfigError, match=r"queries file .*missing\.jsonl does not exist"):
        query_instructions(corpus, job, dataset_settings, Counter())
