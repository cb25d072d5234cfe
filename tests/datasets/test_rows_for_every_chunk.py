"""Issue 26: training rows for every chunk, golden questions a person would ask, a bounded and
visible generator. Real MongoDB wire server; the demo corpus as the feature step chunks it; a
scripted generator where the test needs to know what the generator wrote."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import pytest

from twinops.datasets import DatasetJob, build_datasets
from twinops.datasets.generators import Generated, Generator
from twinops.datasets.prompts import ANSWER_PROMPT, INSTRUCTION_PROMPT, PromptTemplate
from twinops.datasets.requests import request_problem
from twinops.settings import Settings

# Issue 26: the demo gave 9 instruction.train rows (and 9 preference.train) from 54 chunks.
ROWS_BEFORE = 9
TEMPLATES_ONLY = DatasetJob(generator="local", budget=0, reranker=False, log_to_mlflow=False)


def _rows(summary, kind: str, split: str) -> list[dict]:
    path = Path(summary.uris[kind]) / f"{split}.jsonl"
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def _is_request(text: str, passage: str = "") -> bool:
    return request_problem(text, passage, min_words=3, max_words=60) is None


class ScriptedGenerator(Generator):
    """Writes chatter for every other passage and a question about the passage for the rest;
    answers every instruction in a plain assistant voice. Counts the items it was asked for."""

    name = "scripted"

    def __init__(self) -> None:
        self.asked: dict[str, int] = {}

    @property
    def version(self) -> str:
        return "1"

    def generate(self, prompt: PromptTemplate, items: Sequence[dict[str, str]], *, on_progress=None):
        self.asked[prompt.id] = self.asked.get(prompt.id, 0) + len(items)
        results = []
        for item in items:
            if prompt.id == INSTRUCTION_PROMPT:
                longest = max(item["text"].replace(".", " ").split(), key=len)
                if sum(map(ord, item["text"])) % 2:
                    results.append(Generated.ok("I'm glad you're happy with the golden set. It is great."))
                else:
                    results.append(Generated.ok(f"Why does {longest} matter to you?"))
            elif prompt.id == ANSWER_PROMPT:
                results.append(Generated.ok(f"Sure. In general, {item['instruction']} depends on context."))
            else:
                results.append(Generated.drop("unknown_prompt"))
        return results


def test_the_demo_gives_ten_times_the_rows_every_chunk_contributing(
    feature_run, dataset_settings: Settings, corpus_kit
) -> None:
    """Templates only (budget 0): no model is loaded, and still 10x the rows of issue 26."""
    feature_run(corpus_kit.demo_documents(), index=False)
    summary = build_datasets(TEMPLATES_ONLY, dataset_settings)

    train = _rows(summary, "instruction", "train")
    assert len(train) >= 10 * ROWS_BEFORE
    assert summary.split_sizes["preference"]["train"] >= 10 * ROWS_BEFORE
    # Every training chunk answers at least one row with its own (cleaned) text.
    golden = _rows(summary, "golden", "test")
    golden_documents = {row["document_id"] for row in golden}
    held_in = {row["document_id"] for row in train}
    assert held_in and not held_in & golden_documents
    # Per source in the report, and per row in the data.
    assert summary.sources["instruction"] == {"template": summary.counts["instruction"]}
    assert {row["source"] for row in train} == {"template"}
    assert summary.generator_seconds == 0 and summary.rebuilt == {}
    # Preference pairs: one per instruction row, none with an empty side.
    pairs = _rows(summary, "preference", "train")
    assert all(p["chosen"][0]["content"].strip() and p["rejected"][0]["content"].strip() for p in pairs)
    assert summary.sources["preference"] == {"template": summary.counts["preference"]}


def test_golden_questions_are_questions_or_requests_one_per_held_out_chunk(
    feature_run, dataset_settings: Settings, corpus_kit, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The generator's chatter never becomes a golden question: it is rebuilt and counted."""
    feature_run(corpus_kit.demo_documents(), index=False)
    scripted = ScriptedGenerator()
    monkeypatch.setattr("twinops.datasets.builder.make_generator", lambda *args, **kwargs: scripted)
    job = DatasetJob(generator="local", budget=None, reranker=False, log_to_mlflow=False)
    summary = build_datasets(job, dataset_settings)

    golden = _rows(summary, "golden", "test")
    questions = [row for row in golden if row["origin"] == "instruction"]
    held_out_chunks = {row["chunk_id"] for row in golden}
    assert len(questions) == len(held_out_chunks) >= 2
    for row in questions:
        assert _is_request(row["instruction"], row["reference"]), row["instruction"]
    # Both sources occur, and the golden report counts what was rebuilt from the templates.
    by_source = summary.sources["golden"]
    assert by_source["generator"] >= 1 and by_source["template"] >= 1
    assert summary.rebuilt["golden"] == by_source["template"] == summary.drops["golden:generator_chatter"]
    # Training rows: generator where its question passed, template elsewhere, chatter counted.
    train = _rows(summary, "instruction", "train")
    assert not any("glad" in row["prompt"][0]["content"] for row in train)
    assert summary.sources["instruction"]["generator"] >= 1
    assert summary.drops["instruction:generator_chatter"] >= 1
    for row in train:
        assert _is_request(row["prompt"][0]["content"], row["completion"][0]["content"]), row
    # The generator answered every instruction row once; its answers are the rejected sides.
    assert scripted.asked[ANSWER_PROMPT] == summary.counts["instruction"]
    assert summary.sources["preference"] == {"generator": summary.counts["preference"]}
    # No held-out chunk (nor its document) in any training row.
    training_documents = {row["document_id"] for row in train}
    assert not training_documents & {row["document_id"] for row in golden}


def test_a_zero_budget_never_loads_the_model(
    feature_run, dataset_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    from twinops.datasets.generators.local import LocalGenerator

    def refuse(self):
        raise AssertionError("the model was loaded with a zero budget")

    monkeypatch.setattr(LocalGenerator, "_load", refuse)
    feature_run(index=False)
    summary = build_datasets(TEMPLATES_ONLY, dataset_settings)
    assert summary.counts["instruction"] > 0 and summary.generator_seconds == 0
    assert set(summary.sources["instruction"]) == {"template"}


@pytest.mark.slow
def test_progress_events_carry_rows_rate_and_time_left(feature_run, dataset_settings: Settings) -> None:
    feature_run()
    events: list[tuple[str, int, int | None, str]] = []
    build_datasets(
        TEMPLATES_ONLY.model_copy(update={"reranker": True}),
        dataset_settings,
        on_progress=lambda step, done, total, note="": events.append((step, done, total, note)),
    )
    steps = {step for step, *_ in events}
    assert {"rows from templates", "reranker pairs"} <= steps
    for _step, done, total, note in events:
        assert total is not None and 0 <= done <= total
        assert "made" in note and "dropped" in note and "rows/s" in note and "left" in note
    # Each step reports its end.
    for step in steps:
        assert any(s == step and done == total for s, done, total, _ in events)


@pytest.mark.slow
def test_smollm2_within_a_budget_never_puts_a_remark_in_the_golden_set(
    feature_run, dataset_settings: Settings, corpus_kit, bundled_models_dir: Path, monkeypatch
) -> None:
    """The real 135M generator, as `make run` uses it, for half a minute: whatever it writes, every
    golden question is a question or a request, and every chunk still gives its rows."""
    from twinops.settings import get_settings

    monkeypatch.setenv("TWINOPS_BASE_MODEL", str(bundled_models_dir / "smollm2-135m-instruct"))
    get_settings.cache_clear()
    feature_run(corpus_kit.demo_documents(), index=False)
    job = DatasetJob(generator="local", budget=30, reranker=False, log_to_mlflow=False)
    summary = build_datasets(job, get_settings())
    for row in _rows(summary, "golden", "test"):
        if row["origin"] == "instruction":
            assert _is_request(row["instruction"], row["reference"]), row["instruction"]
    assert summary.split_sizes["instruction"]["train"] >= 10 * ROWS_BEFORE
    asked = sum(v for k, v in summary.drops.items() if ":generator_" in k or k.endswith(":budget_spent"))
    assert summary.generator_seconds > 0 and asked > 0
