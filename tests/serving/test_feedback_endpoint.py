"""``POST /feedback`` as an attacker would use it: no identity, the wrong token, a forged rating type,
a chosen date, a 10 MB comment and 200 votes on one answer. Each is refused or counted once.

The endpoint is the RAG server's own (``TwinRAG.feedback_router``) over a real request log in the
wire server; the RAG pipeline behind it is not needed to rate an answer, so none is built.
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from twinops.domain.documents import utcnow
from twinops.domain.serving import MAX_EDITED_ANSWER_CHARS, RagRequestRecord
from twinops.infra.mongo import connect
from twinops.infra.request_log import RequestLogRepository
from twinops.serving.feedback import FeedbackIdentity
from twinops.serving.rag import TwinRAG

TOKEN = "s3cret-feedback-token"
REQUEST = "req-answer-1"
TOO_LONG = "x" * (MAX_EDITED_ANSWER_CHARS + 1)


@pytest.fixture
def request_log(mongo_settings) -> RequestLogRepository:
    repository = RequestLogRepository(connect(mongo_settings))
    repository.record(
        RagRequestRecord(
            request_id=REQUEST,
            question="What is a registry alias?",
            answer="A name for a version.",
            prompt_id="rag-answer",
            prompt_version=1,
            prompt_hash="hash",
        )
    )
    return repository


def _client(request_log: RequestLogRepository, identity: FeedbackIdentity) -> TestClient:
    model = TwinRAG("twin-rag", lambda: SimpleNamespace(request_log=request_log), feedback_identity=identity)
    model.load()
    app = FastAPI()
    app.include_router(model.feedback_router())
    return TestClient(app)


def _bearer(token: str = TOKEN) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


def test_without_a_configured_identity_the_server_takes_no_feedback(request_log):
    client = _client(request_log, FeedbackIdentity())
    reply = client.post("/feedback", json={"request_id": REQUEST, "rating": 5}, headers=_bearer())
    assert reply.status_code == 403 and "TWINOPS_FEEDBACK_TOKEN" in reply.json()["error"]
    assert request_log.feedback_for(REQUEST) == []


def test_a_vote_needs_the_token_and_is_stored_with_its_voter_and_the_servers_time(request_log):
    client = _client(request_log, FeedbackIdentity(token=TOKEN))
    vote = {"request_id": REQUEST, "rating": 2, "edited_answer": "An alias names a version."}
    for headers in ({}, _bearer("guess"), {"authorization": TOKEN}, {"x-forwarded-user": "mallory"}):
        refused = client.post("/feedback", json=vote, headers=headers)
        assert refused.status_code == 401, headers
        assert refused.headers["www-authenticate"] == "Bearer"
    assert request_log.feedback_for(REQUEST) == []

    before = utcnow()
    accepted = client.post("/feedback", json=vote, headers=_bearer())
    after = utcnow()
    assert accepted.status_code == 201, accepted.text
    [stored] = request_log.feedback_for(REQUEST)
    assert stored.id == accepted.json()["id"]
    assert stored.voter is not None and stored.voter.startswith("token:") and TOKEN not in stored.voter
    assert before.replace(microsecond=0) <= stored.created_at <= after


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"request_id": REQUEST, "rating": "5"}, "rating"),
        ({"request_id": REQUEST, "rating": True}, "rating"),
        ({"request_id": REQUEST, "rating": 4.0}, "rating"),
        ({"request_id": REQUEST, "rating": 5, "created_at": "2099-01-01T00:00:00Z"}, "created_at"),
        ({"request_id": REQUEST, "rating": 5, "voter": "user:alice"}, "voter"),
        ({"request_id": REQUEST, "rating": 5, "edited_answer": TOO_LONG}, "edited_answer"),
        ({"request_id": REQUEST, "rating": 5, "comment": 7}, "comment"),
    ],
)  # fmt: skip
def test_forged_types_chosen_dates_and_long_texts_are_refused_naming_the_field(request_log, body, field):
    client = _client(request_log, FeedbackIdentity(token=TOKEN))
    reply = client.post("/feedback", json=body, headers=_bearer())
    assert reply.status_code == 400, reply.text
    assert reply.json()["error"].startswith(f"{field}:")
    assert request_log.feedback_for(REQUEST) == []


def test_a_body_of_megabytes_is_refused_before_it_is_parsed(request_log):
    client = _client(request_log, FeedbackIdentity(token=TOKEN))
    huge = {"request_id": REQUEST, "rating": 5, "comment": "spam " * 2_000_000}
    reply = client.post("/feedback", json=huge, headers=_bearer())
    assert reply.status_code == 413 and "bytes" in reply.json()["error"]
    assert request_log.feedback_for(REQUEST) == []


def test_one_vote_per_identity_per_answer_the_latest_kept(request_log):
    client = _client(request_log, FeedbackIdentity(token=TOKEN, user_header="kubeflow-userid"))
    for index in range(200):
        vote = {"request_id": REQUEST, "rating": 1 + index % 5}
        assert client.post("/feedback", json=vote, headers={"kubeflow-userid": "mallory"}).status_code == 201
    alice = {"request_id": REQUEST, "rating": 4}
    assert client.post("/feedback", json=alice, headers={"kubeflow-userid": "alice"}).status_code == 201
    assert client.post("/feedback", json=alice, headers=_bearer()).status_code == 201

    votes = {f.voter: f.rating for f in request_log.feedback_for(REQUEST)}
    token_voters = [voter for voter in votes if voter.startswith("token:")]
    assert len(votes) == 3 and len(token_voters) == 1  # mallory, alice and the token's holder
    assert votes["user:mallory"] == 5  # the last of mallory's 200 (index 199: 1 + 4)
    assert votes["user:alice"] == 4
