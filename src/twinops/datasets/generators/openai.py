"""Any OpenAI-compatible chat completions endpoint (the project's KServe LLM, vLLM, a hosted API).

Requests run ``batch_size`` at a time. Timeouts, 429 and 5xx are retried with exponential backoff;
a reply that is not the JSON the prompt asks for is re-asked with the validation error. An item
that still fails comes back dropped with a reason (``timeout``, ``invalid_json``, ...), never a crash.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import httpx
from pydantic import BaseModel, Field, ValidationError, create_model

from twinops.datasets.generators.base import Generated, Generator, ProgressCallback
from twinops.datasets.prompts import PromptTemplate
from twinops.errors import ConfigError, ServiceUnavailable
from twinops.settings import Settings

_FENCE = re.compile(r"^```(?:json)?\s*|\s*```$", re.IGNORECASE)
_RETRYABLE_STATUS = {408, 409, 425, 429, 500, 502, 503, 504}


class _ItemFailed(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _output_model(prompt: PromptTemplate) -> type[BaseModel]:
    return create_model(f"{prompt.id}-output", **{prompt.output: (str, Field(min_length=1))})


def parse_output(content: str, model: type[BaseModel], field: str) -> str:
    """The ``field`` of a JSON reply (code fences tolerated); raises ValueError when invalid."""
    text = _FENCE.sub("", content.strip())
    try:
        return str(getattr(model.model_validate(json.loads(text)), field)).strip()
    except (json.JSONDecodeError, ValidationError, TypeError) as error:
        raise ValueError(str(error).splitlines()[0]) from error


class OpenAIGenerator(Generator):
    name = "openai"

    def __init__(
        self,
        url: str,
        model: str,
        *,
        api_key: str | None = None,
        timeout: float = 60.0,
        batch_size: int = 8,
        max_retries: int = 3,
        max_reasks: int = 2,
        backoff_seconds: float = 0.5,
    ) -> None:
        self.url = url.rstrip("/")
        self.model = model
        self.batch_size = max(1, batch_size)
        self.max_retries = max_retries
        self.max_reasks = max_reasks
        self.backoff_seconds = backoff_seconds
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._client = httpx.Client(timeout=timeout, headers=headers)

    @classmethod
    def from_settings(cls, settings: Settings, **options) -> OpenAIGenerator:
        if not settings.generator_url or not settings.generator_model:
            raise ConfigError(
                "the openai generator needs an endpoint: set TWINOPS_GENERATOR_URL (e.g. "
                "http://127.0.0.1:8000/v1) and TWINOPS_GENERATOR_MODEL, or use --generator local",
                setting="TWINOPS_GENERATOR_URL",
            )
        return cls(
            settings.generator_url,
            settings.generator_model,
            api_key=settings.generator_api_key,
            timeout=settings.generator_timeout,
            **options,
        )

    @property
    def version(self) -> str:
        return self.model

    def close(self) -> None:
        self._client.close()

    def generate(
        self,
        prompt: PromptTemplate,
        items: Sequence[dict[str, str]],
        *,
        on_progress: ProgressCallback | None = None,
    ) -> list[Generated]:
        output_model = _output_model(prompt)

        def run(item: dict[str, str]) -> Generated:
            result = self._one(prompt, output_model, item)
            if on_progress:
                on_progress(1)
            return result

        with ThreadPoolExecutor(max_workers=self.batch_size, thread_name_prefix="generator") as pool:
            return list(pool.map(run, items))

    def _one(self, prompt: PromptTemplate, output_model: type[BaseModel], item: dict[str, str]) -> Generated:
        messages = prompt.messages(item, json_output=True)
        for _ in range(self.max_reasks + 1):
            try:
                content = self._complete(messages, prompt.max_new_tokens)
            except _ItemFailed as failure:
                return Generated.drop(failure.reason)
            try:
                return Generated.ok(parse_output(content, output_model, prompt.output))
            except ValueError as error:
                # Re-ask in the same conversation, saying exactly what was wrong with the reply.
                messages = [
                    *messages,
                    {"role": "assistant", "content": content},
                    {
                        "role": "user",
                        "content": f"That reply was not valid JSON for this task ({error}). Reply with "
                        f'only a JSON object with the key "{prompt.output}".',
                    },
                ]
        return Generated.drop("invalid_json")

    def _complete(self, messages: list[dict[str, str]], max_new_tokens: int) -> str:
        """The assistant message content, retrying transient failures with exponential backoff."""
        body = {
            "model": self.model,
            "messages": messages,
            "temperature": 0.0,
            # JSON quoting and keys cost tokens on top of the answer itself.
            "max_tokens": max_new_tokens * 2 + 16,
        }
        failure = "timeout"
        for attempt in range(self.max_retries + 1):
            if attempt:
                time.sleep(self.backoff_seconds * 2 ** (attempt - 1))
            try:
                response = self._client.post(f"{self.url}/chat/completions", json=body)
            except httpx.TimeoutException:
                failure = "timeout"
                continue
            except httpx.TransportError as error:
                failure = f"unreachable ({type(error).__name__})"
                continue
            if response.status_code in _RETRYABLE_STATUS:
                failure = f"http_{response.status_code}"
                continue
            self._raise_for_config(response)
            if response.status_code >= 400:
                raise _ItemFailed(f"http_{response.status_code}")
            try:
                return response.json()["choices"][0]["message"]["content"] or ""
            except (ValueError, KeyError, IndexError, TypeError):
                return response.text  # not an OpenAI envelope: let JSON validation re-ask
        if failure.startswith("unreachable"):
            raise ServiceUnavailable(
                f"generator endpoint {self.url} is {failure}: start it or fix TWINOPS_GENERATOR_URL",
                setting="TWINOPS_GENERATOR_URL",
            )
        raise _ItemFailed(failure)

    def _raise_for_config(self, response: httpx.Response) -> None:
        # These fail every item the same way: stop with one line instead of dropping everything.
        if response.status_code in (401, 403):
            raise ConfigError(
                f"generator endpoint {self.url} refused the key (HTTP {response.status_code}): "
                "fix TWINOPS_GENERATOR_API_KEY",
                setting="TWINOPS_GENERATOR_API_KEY",
            )
        if response.status_code == 404:
            raise ConfigError(
                f"generator endpoint {self.url}/chat/completions or model {self.model!r} was not "
                "found (HTTP 404): fix TWINOPS_GENERATOR_URL or TWINOPS_GENERATOR_MODEL",
                setting="TWINOPS_GENERATOR_URL",
            )
