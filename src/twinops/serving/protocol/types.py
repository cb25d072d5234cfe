"""The small types a model speaks in, whatever the protocol: what a request asks of the decoder
(``SamplingParams``) and what a generating model yields (``TextDelta``).

They live with the protocol, not with the engine: the OpenAI and V2 layers build them from the
wire, and models and the engine import them from here (kserve keeps its types the same way, in
``protocol/rest/openai/types``).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class SamplingParams(BaseModel):
    """What one request asks of the decoder."""

    max_tokens: int = Field(64, ge=1)
    temperature: float = Field(0.0, ge=0.0, le=2.0)
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    stop: tuple[str, ...] = ()

    @property
    def greedy(self) -> bool:
        return self.temperature == 0.0


class TextDelta(BaseModel):
    """A piece of one request's answer; the last one carries ``finish_reason`` and token counts."""

    text: str = ""
    finish_reason: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    extra: dict[str, Any] = Field(default_factory=dict, description="Top-level response extensions.")
