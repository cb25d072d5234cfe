"""The deterministic backend: rules instead of a model, for tests and dry runs.

Instructions come from the passage's heading or first sentence; answers are a fixed generic
paragraph (the "generic style" a preference pair must reject). Same input, same output, always.
"""

from __future__ import annotations

from collections.abc import Sequence

from twinops.datasets.generators.base import Generated, Generator, ProgressCallback
from twinops.datasets.prompts import (
    ANSWER_PROMPT,
    INSTRUCTION_PROMPT,
    SELF_INSTRUCT_PROMPT,
    PromptTemplate,
    load_seed_tasks,
)
from twinops.datasets.text import topic_of
from twinops.domain.hashing import content_hash
from twinops.errors import ConfigError

_FRAMES = (
    "Write about {topic}.",
    "Explain {topic} in your own words.",
    "Share your perspective on {topic}.",
    "Describe {topic}.",
)
_GENERIC_ANSWER = (
    "That is a great question. In general, {topic!r} is a broad request with many aspects to "
    "consider. It is important to understand the context, weigh the pros and cons, and follow "
    "established best practices. Different people may have different opinions, so it is always "
    "a good idea to do further research. In conclusion, the right approach depends on your goals."
)


def _pick(options: Sequence[str], key: str) -> str:
    return options[int(content_hash(key)[:8], 16) % len(options)]


class ExtractiveGenerator(Generator):
    name = "extractive"

    @property
    def version(self) -> str:
        return "1"

    def generate(
        self,
        prompt: PromptTemplate,
        items: Sequence[dict[str, str]],
        *,
        on_progress: ProgressCallback | None = None,
    ) -> list[Generated]:
        results = []
        for item in items:
            results.append(self._one(prompt, item))
            if on_progress:
                on_progress(1)
        return results

    def _one(self, prompt: PromptTemplate, item: dict[str, str]) -> Generated:
        if prompt.id == INSTRUCTION_PROMPT:
            topic = topic_of(item["text"], item.get("title", ""))
            return Generated.ok(_pick(_FRAMES, item["text"]).format(topic=topic) if topic else "")
        if prompt.id == SELF_INSTRUCT_PROMPT:
            seeds = load_seed_tasks().tasks
            styles = [seed for seed in seeds if seed.example == item["example"]] or list(seeds)
            topic = topic_of(item["text"])
            return Generated.ok(styles[0].render(topic) if topic else "")
        if prompt.id == ANSWER_PROMPT:
            return Generated.ok(_GENERIC_ANSWER.format(topic=item["instruction"].strip()))
        raise ConfigError(f"the extractive generator has no rule for prompt {prompt.id!r}")
