"""OpenAI-compatible chat completions through the ``openai`` SDK: the one client of the judge, the
dataset generator, ``twinops ask`` (the RAG server) and the rollout's canary probes.

The SDK retries connection errors, timeouts, 408/409/429 and 5xx with exponential backoff and
honours ``Retry-After`` (``max_retries``; 0 where a failure is what is measured).
``chat_completion`` makes one request and maps what the SDK raises onto what the caller can act
on; ``complete_json`` asks through it for structured output (a JSON schema from a pydantic model):

- ``ServiceUnavailable``: the endpoint cannot be reached (after the retries);
- ``ConfigError``: the key is refused (401/403) or the URL or model does not exist (404); every
  request would fail the same way, so the run stops with one line naming the setting;
- ``CompletionFailed``: this one request failed (timeout; ``ChatRefused`` for another status, with
  the server's reason); the caller drops the item or skips the score and goes on, or says why.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from twinops.errors import ConfigError, ServiceUnavailable


class CompletionFailed(Exception):
    """One completion failed after the SDK's retries; ``reason`` is short (``timeout``, ``http_400``)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Endpoint(BaseModel):
    """An OpenAI-compatible endpoint and the settings that name its URL, model and key."""

    url: str
    model: str
    api_key: str | None = None
    url_setting: str
    model_setting: str
    key_setting: str


def chat_client(endpoint: Endpoint, *, timeout: float, max_retries: int) -> Any:
    """An ``openai.OpenAI`` client for the endpoint (no key: servers that need none get a dummy)."""
    from openai import OpenAI

    return OpenAI(
        base_url=endpoint.url.rstrip("/"),
        api_key=endpoint.api_key or "not-needed",
        timeout=timeout,
        max_retries=max_retries,
    )


def json_response_format(model: type[BaseModel]) -> dict[str, Any]:
    """The ``response_format`` that asks the server for JSON matching ``model``."""
    return {
        "type": "json_schema",
        "json_schema": {"name": model.__name__.replace("-", "_"), "schema": model.model_json_schema()},
    }


class ChatRefused(CompletionFailed):
    """The server answered this request with an error status (its ``status`` and one-line ``message``)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"http_{status}")
        self.status = status
        self.message = message


def _server_message(error: Any) -> str:
    """The server's own one-line reason: OpenAI's ``error.message``, kserve's ``error``, else the text."""
    body = getattr(error, "body", None)
    if isinstance(body, dict):
        inner = body.get("error", body.get("message"))
        if isinstance(inner, dict):
            inner = inner.get("message")
        if inner:
            return str(inner).splitlines()[0][:200]
    response = getattr(error, "response", None)
    return (response.text if response is not None else str(error))[:200]


def chat_completion(client: Any, endpoint: Endpoint, messages: list[dict[str, str]], **options: Any) -> Any:
    """One ``chat.completions.create`` on ``endpoint.model`` (``options`` as the SDK takes them,
    ``extra_body`` included), every failure mapped the same way:

    - unreachable: ``ServiceUnavailable`` naming ``endpoint.url_setting``;
    - the key refused (401/403) or the URL or model unknown (404): ``ConfigError`` naming the setting,
      since every request would fail alike;
    - a timeout: ``CompletionFailed("timeout")``; any other error status: ``ChatRefused`` with the
      server's reason, for the caller to decide whether the item or the run fails.
    """
    import openai

    try:
        return client.chat.completions.create(model=endpoint.model, messages=messages, **options)
    except openai.APITimeoutError as error:
        raise CompletionFailed("timeout") from error
    except openai.APIConnectionError as error:
        raise ServiceUnavailable(
            f"the endpoint {endpoint.url} is unreachable ({type(error.__cause__ or error).__name__}): "
            f"start it or fix {endpoint.url_setting}",
            setting=endpoint.url_setting,
        ) from error
    except (openai.AuthenticationError, openai.PermissionDeniedError) as error:
        raise ConfigError(
            f"the endpoint {endpoint.url} refused the key (HTTP {error.status_code}): "
            f"fix {endpoint.key_setting}",
            setting=endpoint.key_setting,
        ) from error
    except openai.NotFoundError as error:
        raise ConfigError(
            f"the endpoint {endpoint.url}/chat/completions or model {endpoint.model!r} was not found "
            f"(HTTP 404): fix {endpoint.url_setting} or {endpoint.model_setting}",
            setting=endpoint.url_setting,
        ) from error
    except openai.APIStatusError as error:
        raise ChatRefused(error.status_code, _server_message(error)) from error


def complete_json(
    client: Any,
    endpoint: Endpoint,
    messages: list[dict[str, str]],
    response_model: type[BaseModel],
    *,
    max_tokens: int,
) -> str:
    """The assistant's reply to ``messages`` (meant to be ``response_model`` JSON; the caller validates)."""
    completion = chat_completion(
        client,
        endpoint,
        messages,
        temperature=0.0,
        max_tokens=max_tokens,
        response_format=json_response_format(response_model),
    )
    choices = getattr(completion, "choices", None) or []
    return (choices[0].message.content or "") if choices else ""
