"""What the Inference side records: one RAG answer with its sources and timings, and the feedback
a user gives on it. The serving stage writes them (through ``infra.request_log``); the datasets
stage turns rated answers into preference pairs, and monitoring reads the request features."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field, computed_field, model_validator

from twinops.domain.documents import utcnow
from twinops.domain.hashing import content_hash, drop_computed_fields

MIN_RATING = 1
MAX_RATING = 5


class SourceRef(BaseModel):
    """A chunk the answer was grounded on, in the order the prompt listed it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    chunk_id: str
    document_id: str
    source_url: str
    score: float = Field(description="First-stage cosine score from Qdrant.")
    rerank_score: float | None = Field(None, description="Cross-encoder score, when a reranker ran.")
    title: str | None = None


class RagRequestRecord(BaseModel):
    """One RAG request and its answer, as written to the request log."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    request_id: str
    created_at: datetime = Field(default_factory=utcnow)
    question: str
    author_id: str | None = Field(None, description="The author the self-query resolved, if any.")
    answer: str
    prompt_id: str
    prompt_version: int
    prompt_hash: str
    models: dict[str, str] = Field(
        default_factory=dict,
        description="Role (llm, reranker, embedder) to what served it, e.g. 'twin-llm v3 [champion]'.",
    )
    sources: tuple[SourceRef, ...] = ()
    timings_ms: dict[str, float] = Field(default_factory=dict, description="Per RAG stage, milliseconds.")
    tokens_generated: int | None = None


# What one rating may carry: a corrected answer is an answer, not a document.
MAX_REQUEST_ID_CHARS = 128
MAX_EDITED_ANSWER_CHARS = 4000
MAX_COMMENT_CHARS = 1000


class FeedbackRequest(BaseModel):
    """``POST /feedback`` as a client sends it. Strict: a rating of ``"5"`` or ``true`` is refused,
    not coerced; who rated and when are the server's to say, so ``voter`` or ``created_at`` in the
    body are refused too (extra fields)."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)

    request_id: str = Field(min_length=1, max_length=MAX_REQUEST_ID_CHARS)
    rating: int = Field(
        ge=MIN_RATING, le=MAX_RATING, description=f"{MIN_RATING} (bad) to {MAX_RATING} (good)."
    )
    edited_answer: str | None = Field(
        None, max_length=MAX_EDITED_ANSWER_CHARS, description="What the answer should have said."
    )
    comment: str | None = Field(None, max_length=MAX_COMMENT_CHARS)


class Feedback(BaseModel):
    """A user's rating of one answer, with an optional corrected answer.

    ``voter`` is the identity the server authenticated (the gateway's user, or the holder of the
    feedback token); with one, the id is that of (request, voter), so a voter's later rating of
    the same answer replaces the earlier: one vote per identity per answer. Rows from before
    identities have none, and an id over their content.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    request_id: str
    rating: int = Field(
        ge=MIN_RATING, le=MAX_RATING, description=f"{MIN_RATING} (bad) to {MAX_RATING} (good)."
    )
    edited_answer: str | None = Field(None, description="What the answer should have said.")
    comment: str | None = None
    voter: str | None = Field(None, description="Who rated, as the server authenticated them.")
    created_at: datetime = Field(default_factory=utcnow)

    @model_validator(mode="before")
    @classmethod
    def _ignore_computed(cls, data):
        return drop_computed_fields(cls, data)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def id(self) -> str:
        if self.voter is not None:
            digest = content_hash("vote", self.request_id, self.voter)
        else:
            digest = content_hash(
                self.request_id, self.rating, self.edited_answer, self.created_at.isoformat()
            )
        return f"feedback-{digest[:16]}"
