"""The request log and feedback repository against the real wire server over TCP."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from twinops.domain.serving import Feedback, RagRequestRecord, SourceRef
from twinops.errors import NotFound
from twinops.infra.mongo import connect
from twinops.infra.request_log import RequestLogRepository

T0 = datetime(2026, 12, 1, 9, 0, 0, 123456, tzinfo=UTC)


def _record(
    request_id: str, *, minutes: int = 0, answer: str = "Sourdough needs patience."
) -> RagRequestRecord:
    return RagRequestRecord(
        request_id=request_id,
        created_at=T0 + timedelta(minutes=minutes),
        question="What do you think of sourdough?",
        author_id="author-1",
        answer=answer,
        prompt_id="rag-answer",
        prompt_version=2,
        prompt_hash="abc123",
        models={"llm": "twin-llm v3 [champion]", "reranker": "twin-reranker v1 [champion]"},
        sources=(
            SourceRef(
                chunk_id="chunk-1",
                document_id="doc-1",
                source_url="https://example.org/bread",
                score=0.82,
                rerank_score=4.5,
                title="Bread",
            ),
        ),
        timings_ms={"retrieve": 12.5, "generate": 340.0},
        tokens_generated=42,
    )


@pytest.fixture
def repository(mongo_settings) -> RequestLogRepository:
    return RequestLogRepository(connect(mongo_settings))


def test_record_round_trips_and_is_idempotent(repository) -> None:
    record = _record("req-1")
    repository.record(record)
    repository.record(_record("req-1", answer="a retry with another answer"))
    stored = repository.get("req-1")
    assert stored.model_dump(exclude={"created_at"}) == record.model_dump(exclude={"created_at"})
    assert stored.created_at == T0.replace(microsecond=123000)  # MongoDB keeps milliseconds
    assert repository.count() == 1


def test_unknown_request_is_not_found(repository) -> None:
    with pytest.raises(NotFound, match="'req-missing' is not in the request log"):
        repository.get("req-missing")


def test_feedback_needs_a_logged_request_and_keeps_its_id(repository) -> None:
    with pytest.raises(NotFound, match="request id 'req-ghost'"):
        repository.add_feedback(Feedback(request_id="req-ghost", rating=5))
    assert repository.rated_requests() == []  # nothing written

    repository.record(_record("req-2"))
    given = Feedback(request_id="req-2", rating=2, edited_answer="Better bread.", created_at=T0)
    stored = repository.add_feedback(given)
    assert repository.add_feedback(given) == stored  # the same feedback twice is one row
    read_back = repository.feedback_for("req-2")
    assert read_back == [stored] and read_back[0].id == stored.id
    assert stored.edited_answer == "Better bread." and stored.rating == 2


def test_rated_requests_pair_feedback_with_its_request_since_a_date(repository) -> None:
    for number in range(3):
        repository.record(_record(f"req-{number}", minutes=number))
    early = repository.add_feedback(
        Feedback(request_id="req-0", rating=5, created_at=T0 + timedelta(hours=1))
    )
    late = repository.add_feedback(Feedback(request_id="req-2", rating=1, created_at=T0 + timedelta(hours=3)))

    rated = repository.rated_requests()
    assert [(request.request_id, feedback.id) for request, feedback in rated] == [
        ("req-0", early.id),
        ("req-2", late.id),
    ]
    since = repository.rated_requests(since=T0 + timedelta(hours=2))
    assert [feedback.id for _, feedback in since] == [late.id]


def test_recent_is_newest_first(repository) -> None:
    for number in range(4):
        repository.record(_record(f"req-{number}", minutes=number))
    assert [r.request_id for r in repository.recent(2)] == ["req-3", "req-2"]
    assert [r.request_id for r in repository.recent(since=T0 + timedelta(minutes=1))] == ["req-3", "req-2"]
