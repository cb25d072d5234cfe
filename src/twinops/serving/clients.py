"""What the RAG pipeline calls for reranking and generation, and async HTTP clients for the servers.

``Reranker`` and ``Generator`` are the two protocols the pipeline takes, so the same pipeline runs
against the project's servers (``RerankerClient``, ``ChatClient``) or in-process models (``twinops
serve all``, tests). The clients speak the wire shapes of KServe's OpenAI-compatible routes, where
``base_url`` ends in ``/openai/v1``:

- ``POST {base_url}/rerank`` with ``{model, query, documents, top_n}`` answers
  ``{results: [{index, document: {text}, relevance_score}]}`` (vLLM's and KServe's rerank API);
- ``POST {base_url}/chat/completions`` is the OpenAI chat API (text plus ``usage``). Behind the
  local weighted router the reply's ``x-twinops-backend`` header says which backend (stable or
  canary) answered; ``ChatReply.backend`` carries it to the RAG answer.

An unreachable server, a non-2xx answer or a body of the wrong shape is a ``ServiceUnavailable``
naming the URL and the flag or setting that points at the server.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple, Protocol

import httpx

from twinops.errors import ServiceUnavailable

# The local router's answer header naming the backend that answered (twinops.serving.router).
BACKEND_HEADER = "x-twinops-backend"
RERANKER_URL_FLAG = "--reranker_url"
LLM_URL_FLAG = "--llm_url"
_DETAIL_CHARS = 200


class Reranker(Protocol):
    """Scores documents against a query with a cross-encoder."""

    name: str  # what serves it, for the request log

    async def rerank(self, query: str, documents: Sequence[str], top_n: int) -> list[tuple[int, float]]:
        """(index into ``documents``, relevance score) for the best ``top_n``, best first."""
        ...


class ChatReply(NamedTuple):
    """The reply text, the tokens generated, and which backend answered (None: not behind a router)."""

    text: str
    tokens: int
    backend: str | None = None


class Generator(Protocol):
    """Generates a chat reply."""

    name: str  # what serves it, for the request log

    async def chat(self, messages: list[dict[str, str]], max_tokens: int, temperature: float) -> ChatReply:
        """The reply text, the number of tokens generated and the backend that answered."""
        ...


def _error_detail(response: httpx.Response) -> str:
    """The server's own message from the OpenAI, V2 or FastAPI error shapes, on one line."""
    try:
        body = response.json()
    except ValueError:
        body = response.text
    if isinstance(body, dict):
        error = body.get("error", body.get("detail", body))
        body = error.get("message", error) if isinstance(error, dict) else error
    return " ".join(str(body).split())[:_DETAIL_CHARS]


class _JsonClient:
    """One pooled async HTTP connection to a server; errors become one-line ServiceUnavailable."""

    role = "server"

    def __init__(
        self,
        base_url: str,
        *,
        setting: str,
        api_key: str | None = None,
        timeout: float = 60.0,
        host: str | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.setting = setting
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        if host:  # through an ingress gateway: the route it picks (and splits) is the Host's
            headers["Host"] = host
        self._client = httpx.AsyncClient(timeout=timeout, headers=headers)

    async def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        return (await self._post_with_headers(path, body))[0]

    async def _post_with_headers(
        self, path: str, body: dict[str, Any]
    ) -> tuple[dict[str, Any], httpx.Headers]:
        url = f"{self.base_url}{path}"
        try:
            response = await self._client.post(url, json=body)
        except httpx.HTTPError as error:
            raise ServiceUnavailable(
                f"the {self.role} at {url} is unreachable ({type(error).__name__}): start it "
                f"(`twinops serve`) or point {self.setting} at it",
                setting=self.setting,
            ) from error
        if not response.is_success:
            raise ServiceUnavailable(
                f"the {self.role} at {url} answered {response.status_code}: {_error_detail(response)}",
                setting=self.setting,
            )
        try:
            return response.json(), response.headers
        except ValueError as error:
            raise self._bad_shape(url, "a body that is not JSON") from error

    def _bad_shape(self, url: str, what: str) -> ServiceUnavailable:
        return ServiceUnavailable(
            f"the {self.role} at {url} answered {what}: is {self.setting} the server's /openai/v1 URL?",
            setting=self.setting,
        )

    async def aclose(self) -> None:
        await self._client.aclose()

    async def __aenter__(self):
        return self

    async def __aexit__(self, *exc_info) -> None:
        await self.aclose()


class RerankerClient(_JsonClient):
    """A reranker server's ``/rerank`` route (vLLM / KServe rerank shape)."""

    role = "reranker"

    def __init__(
        self,
        base_url: str,
        model: str = "twin-reranker",
        *,
        setting: str = RERANKER_URL_FLAG,
        api_key: str | None = None,
        timeout: float = 60.0,
    ) -> None:
        super().__init__(base_url, setting=setting, api_key=api_key, timeout=timeout)
        self.model = model
        self.name = f"{model} @ {self.base_url}"

    async def rerank(self, query: str, documents: Sequence[str], top_n: int) -> list[tuple[int, float]]:
        body = {"model": self.model, "query": query, "documents": list(documents), "top_n": top_n}
        reply = await self._post("/rerank", body)
        try:
            ranked = [(int(r["index"]), float(r["relevance_score"])) for r in reply["results"]]
        except (KeyError, TypeError, ValueError) as error:
            raise self._bad_shape(
                f"{self.base_url}/rerank", "no {results: [{index, relevance_score}]}"
            ) from error
        if any(not 0 <= index < len(documents) for index, _ in ranked):
            raise self._bad_shape(f"{self.base_url}/rerank", "a document index out of range")
        return sorted(ranked, key=lambda pair: -pair[1])[:top_n]


class ChatClient(_JsonClient):
    """An LLM server's OpenAI ``/chat/completions`` route."""

    role = "LLM server"

    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        setting: str = LLM_URL_FLAG,
        api_key: str | None = None,
        timeout: float = 120.0,
        host: str | None = None,
    ) -> None:
        super().__init__(base_url, setting=setting, api_key=api_key, timeout=timeout, host=host)
        self.model = model
        self.name = f"{model} @ {host or self.base_url}"

    async def chat(self, messages: list[dict[str, str]], max_tokens: int, temperature: float) -> ChatReply:
        body = {
            "model": self.model,
            "messages": messages,
            "max_tokens": max_tokens,
            "temperature": temperature,
        }
        reply, headers = await self._post_with_headers("/chat/completions", body)
        try:
            text = reply["choices"][0]["message"]["content"] or ""
            usage = reply.get("usage") or {}
            tokens = int(usage.get("completion_tokens") or 0)
        except (KeyError, IndexError, TypeError, ValueError, AttributeError) as error:
            raise self._bad_shape(f"{self.base_url}/chat/completions", "no choices[0].message") from error
        return ChatReply(text, tokens, headers.get(BACKEND_HEADER))
