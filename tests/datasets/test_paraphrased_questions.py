"""Issue 26 item 5: questions people write in their own words, apart from the extractive ones.

The demo ships such questions (``data/demo-questions.jsonl``): each must quote its answer and
share few words with it. A build with them puts those of held-out documents in the golden set,
marked paraphrased, and those of training documents in the instruction rows (where the drift
reference reads its questions) and the reranker queries, never one side's in the other.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
from tests.datasets.conftest import DEMO_CORPUS

from twinops.datasets import DatasetJob, build_datasets
from twinops.datasets.paraphrase import (
    MAX_PARAPHRASE_OVERLAP,
    PARAPHRASE,
    WRITTEN,
    lexical_overlap,
    read_written_questions,
)
from twinops.datasets.reranker_pairs import retrieval_queries
from twinops.errors import ConfigError
from twinops.settings import Settings

DEMO_QUESTIONS = DEMO_CORPUS.parent / "demo-questions.jsonl"


def _rows(summary, kind: str, split: str) -> list[dict]:
    path = Path(summary.uris[kind]) / f"{split}.jsonl"
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def _folded(text: str) -> str:
    return " ".join(text.split()).casefold()


def test_overlap_counts_the_questions_words_found_in_the_passage() -> None:
    passage = "Calibrate GPTQ on the author's own text, and keep the embedding layers in float."
    assert lexical_overlap("How should GPTQ calibration use the author's text?", passage) > 0.6
    assert lexical_overlap("How do I stop my compressed model from getting worse?", passage) == 0.0
    assert lexical_overlap("?", passage) == 0.0


def test_the_demos_questions_quote_their_answer_in_other_words() -> None:
    """Every shipped question names a demo document, quotes one of its paragraphs exactly, and
    shares at most a third of its content words with that paragraph."""
    questions = read_written_questions(DEMO_QUESTIONS)
    documents = {path.name: path.read_text(encoding="utf-8") for path in DEMO_CORPUS.iterdir()}
    assert len(questions) >= 3 * len(documents)
    per_document = Counter(question.document for question in questions)
    assert set(per_document) == set(documents), "every demo document has questions"
    for question in questions:
        paragraphs = [
            p for p in documents[question.document].split("\n\n") if _folded(question.evidence) in _folded(p)
        ]
        assert paragraphs, f"{question.document}: the quote {question.evidence!r} is not in it"
        overlap = lexical_overlap(question.question, paragraphs[0])
        assert overlap <= MAX_PARAPHRASE_OVERLAP, (
            f"{question.question!r} shares {overlap:.0%} with its passage"
        )
        assert question.question.rstrip().endswith("?") or question.question.split()[0].istitle()


def test_a_bad_line_is_one_error_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "questions.jsonl"
    path.write_text(
        '{"document": "a.md", "question": "Why?", "evidence": "some words of it"}\n{"document": "a.md"}\n'
    )
    with pytest.raises(ConfigError) as error:
        read_written_questions(path)
    message = str(error.value)
    assert "line 2" in message and "question" in message and len(message.splitlines()) == 1
    with pytest.raises(ConfigError, match="does not exist"):
        read_written_questions(tmp_path / "missing.jsonl")


def test_paraphrased_questions_become_reranker_queries_of_their_own_origin() -> None:
    queries = retrieval_queries(
        [("What is it?", "c1", "d1", "passage"), ("How come?", "c2", "d1", PARAPHRASE)], [], probes=0
    )
    assert [query.origin for query in queries] == ["instruction", PARAPHRASE]


def test_a_build_keeps_held_out_questions_in_the_golden_set_and_the_rest_for_training(
    feature_run, dataset_settings: Settings, corpus_kit
) -> None:
    feature_run(corpus_kit.demo_documents(), index=False)
    job = DatasetJob(
        generator="local",
        budget=0,
        reranker=False,
        log_to_mlflow=False,
        paraphrased_questions=str(DEMO_QUESTIONS),
    )
    summary = build_datasets(job, dataset_settings)
    golden = _rows(summary, "golden", "test")
    train = _rows(summary, "instruction", "train")
    written = {question.question for question in read_written_questions(DEMO_QUESTIONS)}

    held_out = [row for row in golden if row["origin"] == PARAPHRASE]
    assert len(held_out) >= 5  # 4 questions per document; this split holds out 2 of the 20
    assert all(row["paraphrased"] and row["source"] == WRITTEN for row in held_out)
    assert {row["instruction"] for row in held_out} <= written
    # Extractive rows are not marked paraphrased (the template questions name the passage's topic).
    assert not any(row["paraphrased"] for row in golden if row["origin"] == "probe")

    trained = [row for row in train if row["source"] == WRITTEN]
    assert len(trained) >= 60
    asked_in_training = {row["prompt"][0]["content"] for row in trained}
    assert asked_in_training <= written
    assert not asked_in_training & {row["instruction"] for row in held_out}
    golden_documents = {row["document_id"] for row in golden}
    assert not {row["document_id"] for row in trained} & golden_documents
    # Counted in the report: where the rows came from, and what was left out and why.
    assert summary.sources["golden"][WRITTEN] == len(held_out)
    # (the instruction set's test split holds the held-out documents' rows, these among them)
    assert summary.sources["instruction"][WRITTEN] == len(trained) + len(held_out)
    # Every shipped question is used: its quote is in a chunk, and it stays paraphrased against
    # the whole chunk (which has more words than the paragraph the file was checked on).
    assert len(held_out) + len(trained) == len(written)
    assert not [key for key in summary.drops if ":paraphrase_" in key]


OFF_TOPIC = Path(__file__).resolve().parents[1] / "data" / "off_topic_questions.jsonl"
# Batches of 16: the held-out pools hold about 40 questions each. The stated false-alarm rate is
# the detectors' p_val whatever the batch size.
DRIFT_BATCH = 16
DRAWS = 200


def _flag_rates(detectors, vectors, draws: int = DRAWS) -> dict[str, int]:
    import numpy as np

    flagged: dict[str, int] = {}
    for seed in range(draws):
        rows = np.random.default_rng(seed).choice(len(vectors), size=DRIFT_BATCH, replace=False)
        for result in detectors.predict(vectors[rows]):
            flagged[result.detector] = flagged.get(result.detector, 0) + int(result.is_drift)
    return flagged


@pytest.mark.slow
def test_with_written_questions_in_the_reference_natural_questions_are_not_drift(
    feature_run, dataset_settings: Settings, corpus_kit, bundled_models_dir: Path, tmp_path: Path
) -> None:
    """The drift reference of a dataset with written questions: natural questions about the corpus,
    held out of it, drift no more often than the detectors' p_val (Clopper-Pearson interval), an
    off-topic shift is flagged, and with the template prompts as the queries (no written
    questions) the same natural questions are flagged in most batches (issue 26's finding)."""
    from scipy.stats import binomtest

    from twinops.features.embedding import open_embedder
    from twinops.infra.mongo import connect
    from twinops.monitoring.config import DriftConfig
    from twinops.monitoring.detectors import SpaceDetectors, SpaceReference, fit_evidently
    from twinops.monitoring.reference import reference_from_datasets

    # Every other question of each document goes into the datasets; the rest is held out.
    by_document: dict[str, list] = {}
    for question in read_written_questions(DEMO_QUESTIONS):
        by_document.setdefault(question.document, []).append(question)
    kept = [q for questions in by_document.values() for q in questions[::2]]
    held_out = [q.question for questions in by_document.values() for q in questions[1::2]]
    kept_file = tmp_path / "kept.jsonl"
    kept_file.write_text("".join(q.model_dump_json() + "\n" for q in kept), encoding="utf-8")
    off_topic = [json.loads(line)["question"] for line in OFF_TOPIC.read_text(encoding="utf-8").splitlines()]

    feature_run(corpus_kit.demo_documents(), index=False)
    config = DriftConfig(batch_size=DRIFT_BATCH, calibration_draws=50, reduced_dimension=32)
    embedder = open_embedder(Settings(embedding_model=str(bundled_models_dir / "all-minilm-l6-v2")))
    natural, shifted = embedder.encode(held_out, batch_size=64), embedder.encode(off_topic, batch_size=64)

    def detectors_of(questions_file: str | None) -> tuple[str, SpaceDetectors]:
        job = DatasetJob(
            generator="local",
            budget=0,
            reranker=False,
            log_to_mlflow=False,
            paraphrased_questions=questions_file,
        )
        summary = build_datasets(job, dataset_settings)
        data = reference_from_datasets(
            connect(dataset_settings), (summary.versions["instruction"],), label="demo"
        )
        reference = SpaceReference.fit(
            "queries", embedder.encode(data.texts["queries"], batch_size=64), config
        )
        return data.label, SpaceDetectors(reference, list(fit_evidently(reference, DRIFT_BATCH, config)))

    label, written = detectors_of(str(kept_file))
    assert label.startswith("demo; queries: the ") and "questions people wrote" in label
    in_topic = _flag_rates(written, natural)
    intervals = {
        name: binomtest(count, DRAWS).proportion_ci(confidence_level=0.95, method="exact")
        for name, count in in_topic.items()
    }
    assert set(in_topic) == {f"evidently-{method}" for method in config.evidently_methods}
    assert all(ci.low <= config.p_val for ci in intervals.values()), in_topic
    shift = _flag_rates(written, shifted)
    assert shift["evidently-mmd"] >= 0.75 * DRAWS, shift
    for count in shift.values():  # every detector alarms on it more often than p_val
        assert binomtest(count, DRAWS).proportion_ci(method="exact").low > config.p_val, shift

    label, prompts = detectors_of(None)
    assert "questions people wrote" not in label
    before = _flag_rates(prompts, natural)
    print(f"of {DRAWS} batches of {DRIFT_BATCH}, flagged: natural {in_topic}; off-topic {shift}; "
          f"natural against the prompts {before}")  # fmt: skip
    assert before["evidently-mmd"] >= 0.75 * DRAWS
