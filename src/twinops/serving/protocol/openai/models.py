"""What a model implements to be served over the OpenAI routes (kserve's ``openai_model``).

A model says what it can do by subclassing ``ChatModel``, ``EmbeddingModel`` or ``RerankModel``;
the routes look it up by the request's ``model`` and know nothing about how it does it.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncIterator

from twinops.serving.protocol.openai.types import ChatCompletionRequest
from twinops.serving.protocol.types import SamplingParams, TextDelta


class ChatModel(ABC):
    """A model that answers chat messages and plain prompts, token by token."""

    name: str
    default_max_tokens: int = 128

    @abstractmethod
    def chat(self, request: ChatCompletionRequest, params: SamplingParams) -> AsyncIterator[TextDelta]:
        """Deltas of the answer; raise ``BadRequest`` before the first one for bad input."""

    @abstractmethod
    def complete(self, prompt: str, params: SamplingParams) -> AsyncIterator[TextDelta]:
        """Deltas of a plain-prompt completion."""


class EmbeddingModel(ABC):
    name: str

    @abstractmethod
    async def embed(self, texts: list[str]) -> tuple[list[list[float]], int]:
        """One vector per text, and the number of tokens read."""


class RerankModel(ABC):
    name: str

    @abstractmethod
    async def rerank(self, query: str, documents: list[str]) -> list[float]:
        """One relevance score per document, in the documents' order."""
