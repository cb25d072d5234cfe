"""Any OpenAI-compatible chat completions endpoint (the project's KServe LLM, vLLM, a hosted API).

Requests go through the ``openai`` SDK (``twinops.infra.llm_client``), ``batch_size`` at a time:
its retries cover timeouts, 429 (honouring ``Retry-After``) and 5xx, and each request asks for
structured output (a JSON schema with the prompt's one output field). A reply that still does not
validate is re-asked with the validation error. An item that fails comes back dropped with a
reason (``timeout``, ``invalid_json``, ``http_400``), never a crash; a refused key, an unknown
model or an unreachable endpoint stops the run with one line.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

from pydantic import BaseModel, Field, ValidationError, create_model

from twinops.datasets.generators.base import Generated, Generator, ProgressCallback
from twinops.datasets.prompts import PromptTemplate
from twinops.errors import ConfigError, first_problem
from twinops.infra.llm_client import CompletionFailed, Endpoint, chat_client, complete_json
from twinops.settings import Settings


def _output_model(prompt: PromptTemplate) -> type[BaseModel]:
    return create_model(f"{prompt.id}-output", **{prompt.output: (str, Field(min_length=1))})


def parse_output(content: str, model: type[BaseModel], field: str) -> str:
    """The ``field`` of a JSON reply; raises ValueError (with pydantic's first problem) when invalid."""
    try:
        return str(getattr(model.model_validate_json(content.strip()), field)).strip()
    except ValidationError as error:
        raise ValueError(first_problem(error).line()) from error


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
    ) -> None:
        self.endpoint = Endpoint(
            url=url,
            model=model,
            api_key=api_key,
            url_setting="TWINOPS_GENERATOR_URL",
            model_setting="TWINOPS_GENERATOR_MODEL",
            key_setting="TWINOPS_GENERATOR_API_KEY",
        )
        self.model = model
        self.batch_size = max(1, batch_size)
        self.max_reasks = max_reasks
        self._client = chat_client(self.endpoint, timeout=timeout, max_retries=max_retries)

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
        # JSON quoting and keys cost tokens on top of the answer itself.
        max_tokens = prompt.max_new_tokens * 2 + 16
        for _ in range(self.max_reasks + 1):
            try:
                content = complete_json(
                    self._client, self.endpoint, messages, output_model, max_tokens=max_tokens
                )
            except CompletionFailed as failure:
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
