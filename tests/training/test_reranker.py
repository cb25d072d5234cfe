"""The reranker: trained as a correction on cosine retrieval, it must beat cosine where it can.

Two fixtures where cosine is wrong in a learnable way. Stuffing: for every topic, a keyword-stuffed
passage ("chess chess chess ...") is what cosine puts first, above the real note on the topic; a
reranker that learns to demote the stuffing ranks the note first on topics it never saw. Siblings:
a question names a part number that only one chunk of a document holds, while its sibling chunks
talk about the document's topic at length, so cosine prefers a sibling; a reranker that learns to
weigh the question's rare words ranks the right chunk first on documents it never saw.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from twinops.domain.versions import DatasetKind
from twinops.training import RerankerJob, TrainerSpec, train_reranker
from twinops.training.reranker import candidate_list, ranking_values, split_validation

TOPICS = [
    "gardening", "sourdough", "cycling", "chess", "astronomy", "woodwork", "jazz", "hiking",
    "pottery", "sailing", "knitting", "climbing", "origami", "birding", "fencing", "rowing",
]  # fmt: skip


def _row(index: int) -> dict:
    topic, other, third = TOPICS[index], TOPICS[(index + 5) % 16], TOPICS[(index + 9) % 16]
    note = f"A short note on {topic}: what years of doing it taught me."
    candidates = [
        (f"spam-{topic}", " ".join([topic] * 6)),
        (f"note-{topic}", note),
        (f"note-{other}", f"A short note on {other}: what years of doing it taught me."),
        (f"note-{third}", f"A short note on {third}: what years of doing it taught me."),
    ]
    return {
        "query": topic,
        "positive": note,
        "negatives": [text for cid, text in candidates if cid != f"note-{topic}"],
        "chunk_id": f"note-{topic}",
        "document_id": f"doc-{topic}",
        "candidates": [{"chunk_id": cid, "content": text} for cid, text in candidates],
    }


def _sibling_row(index: int) -> dict:
    """A document on ``topic`` in three chunks; the question names the part only chunk 2 mentions."""
    topic, part = TOPICS[index], f"k{7301 + 37 * index}"
    chunks = [
        (f"{topic}-1", f"All about {topic}: why {topic} matters, {topic} for beginners and {topic} at home."),
        (f"{topic}-2", f"Order spare {part} early; the shop runs out of {part} every spring."),
        (f"{topic}-3", f"More {topic}: {topic} clubs, {topic} gear and the history of {topic}."),
        (f"{TOPICS[(index + 3) % 16]}-1", f"All about {TOPICS[(index + 3) % 16]}, from the start."),
    ]
    return {
        "query": f"{topic} {part}",
        "positive": chunks[1][1],
        "negatives": [text for cid, text in chunks if cid != chunks[1][0]],
        "chunk_id": chunks[1][0],
        "document_id": f"doc-{topic}",
        "candidates": [{"chunk_id": cid, "content": text} for cid, text in chunks],
    }


def test_lexical_overlap_weighs_the_words_only_some_candidates_have() -> None:
    from twinops.models.rerank import lexical_overlap

    overlap = lexical_overlap(
        "spare k7301 for the chess set",
        ["The chess set, for the club.", "Order spare k7301 for the chess set.", "Nothing in common."],
    )
    assert overlap[1] == pytest.approx(1.0) and overlap[2] == 0.0
    assert 0.0 < overlap[0] < 0.5  # only the words most candidates share
    assert lexical_overlap("", ["a", "b"]) == [0.0, 0.0]


def test_candidate_lists_and_ranks() -> None:
    row = _row(0)
    passages, target = candidate_list(row, 4, ensure_positive=False)
    assert target == 1 and passages[0].startswith("gardening gardening")
    missed = {**row, "candidates": row["candidates"][2:]}  # the first stage missed the positive
    assert candidate_list(missed, 4, ensure_positive=False)[1] is None
    passages, target = candidate_list(missed, 2, ensure_positive=True)
    assert passages[target] == row["positive"] and len(passages) == 2
    assert ranking_values([0.1, 0.9, 0.5], 0, k=2) == (0.0, 1 / 3)
    assert ranking_values([0.5, 0.5], 1, k=1) == (0.0, 0.5)  # ties keep the first-stage order
    assert ranking_values([0.5, 0.5], None) == (0.0, 0.0)
    rows = [_row(i) for i in range(16)]
    fit, validation = split_validation(rows, 0.25, seed=0)
    assert (
        validation
        and fit
        and {r["document_id"] for r in fit}.isdisjoint(r["document_id"] for r in validation)
    )


@pytest.mark.slow
def test_trained_reranker_beats_cosine_and_its_folder_scores_the_same(
    training_settings, make_dataset, bundled_models_dir: Path
) -> None:
    from mlflow import MlflowClient

    from twinops.models.rerank import load_reranker

    rows = [_row(i) for i in range(16)]
    dataset = make_dataset(DatasetKind.RERANKER, train=12, test=4, rows=rows)
    job = RerankerJob(
        model=str(bundled_models_dir / "all-minilm-l6-v2"),
        candidates=4,
        validation_fraction=0.0,
        trainer=TrainerSpec(
            learning_rate=1e-4, max_steps=30, per_device_train_batch_size=4, max_length=32, device="cpu"
        ),
        progress=False,
    )
    result = train_reranker(job, training_settings)

    metrics = result.metrics
    assert metrics["test_queries"] == 4.0 and metrics["test_cosine_mrr"] < 1.0  # cosine: stuffing first
    assert metrics["test_mrr"] > metrics["test_cosine_mrr"] and metrics["test_mrr_delta_ci_low"] >= 0
    assert result.steps == 30 and result.dataset_version_ids == [dataset.id]

    # The saved folder is the scorer serving loads, and it ranks as training measured.
    reranker = load_reranker(result.model_dir, device="cpu")
    assert reranker.config.first_stage_weight == pytest.approx(metrics["first_stage_weight"])
    assert reranker.config.lexical_weight == pytest.approx(metrics["lexical_weight"])
    reciprocal_ranks = []
    for row in rows[12:]:
        passages, target = candidate_list(row, 4, ensure_positive=False)
        reciprocal_ranks.append(ranking_values(reranker.score(row["query"], passages), target)[1])
    assert sum(reciprocal_ranks) / 4 == pytest.approx(metrics["test_mrr"])
    run = MlflowClient(training_settings.mlflow_tracking_uri).get_run(result.mlflow_run_id)
    assert run.data.tags["dataset_version_ids"] == dataset.id and "test_mrr_ci_low" in run.data.metrics


@pytest.mark.slow
def test_the_trained_reranker_finds_the_sibling_cosine_misses_on_held_out_documents(
    training_settings, make_dataset, bundled_models_dir: Path
) -> None:
    from twinops.models.rerank import load_reranker

    rows = [_sibling_row(i) for i in range(16)]
    make_dataset(DatasetKind.RERANKER, train=12, test=4, rows=rows)
    job = RerankerJob(
        model=str(bundled_models_dir / "all-minilm-l6-v2"),
        candidates=4,
        validation_fraction=0.0,
        trainer=TrainerSpec(max_steps=2, per_device_train_batch_size=2, max_length=32, device="cpu"),
        progress=False,
    )
    result = train_reranker(job, training_settings)

    reranker = load_reranker(result.model_dir, device="cpu")  # the serving path
    for row in rows[12:]:  # documents training never saw
        passages, target = candidate_list(row, 4, ensure_positive=False)
        cosines = reranker.embedder.encode([row["query"], *passages], normalize_embeddings=True)
        assert max(range(4), key=lambda i: float(cosines[1:][i] @ cosines[0])) != target  # cosine: a sibling
        scores = reranker.score(row["query"], passages)
        assert max(range(4), key=lambda i: scores[i]) == target
    assert result.metrics["test_mrr"] == 1.0 and result.metrics["test_mrr_delta_ci_low"] > 0


@pytest.mark.slow
def test_an_untrained_reranker_ranks_exactly_as_cosine(bundled_models_dir: Path) -> None:
    from twinops.training.reranker import _prepared, _Scorer

    scorer = _Scorer(str(bundled_models_dir / "all-minilm-l6-v2"), RerankerJob(), "cpu")
    for item in _prepared([_row(i) for i in range(4)] + [_sibling_row(0)], scorer, 4, training=False):
        scores, cosines = scorer.scores(item), item["cosines"]
        assert sorted(range(4), key=lambda i: -scores[i]) == sorted(range(4), key=lambda i: -cosines[i])
