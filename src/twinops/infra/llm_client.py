"""OpenAI-compatible chat completions through the ``openai`` SDK, for the judge and the generator.

The SDK retries connection errors, timeouts, 408/409/429 and 5xx with exponential backoff and
honours ``Retry-After``. ``complete_json`` asks for structured output (a JSON schema from a
pydantic model) and maps what the SDK raises onto what the caller can act on:

- ``ServiceUnavailable``: the endpoint cannot be reached (after the retries);
- ``ConfigError``: the key is refused (401/403) or the URL or model does not exist (404); every
  request would fail the same way, so the run stops with one line naming the setting;
- ``CompletionFailed``: this one request failed (timeout, another status); the caller drops the
  item or skips the score and goes on.
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


def complete_json(
    client: Any,
    endpoint: Endpoint,
    messages: list[dict[str, str]],
    response_model: type[BaseModel],
    *,
    max_tokens: int,
) -> str:
    """The assistant's reply to ``messages`` (meant to be ``response_model`` JSON; the caller validates)."""
    import openai

    try:
        completion = client.chat.completions.create(
            model=endpoint.model,
            messages=messages,
            temperature=0.0,
            max_tokens=max_tokens,
            response_format=json_response_format(response_model),
        )
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
        raise CompletionFailed(f"http_{error.status_code}") from error
    choices = getattr(completion, "choices", None) or []
    return (choices[0].message.content or "") if choices else ""
