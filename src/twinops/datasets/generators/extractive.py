"""The deterministic backend: the dataset templates instead of a model, for tests and dry runs.

Instructions are ``templates.passage_instruction`` of the passage; answers are
``templates.generic_answer`` (the "generic style" a preference pair must reject); Self-Instruct
requests fill the example's seed style with the passage's key phrase. Same input, same output,
always. The builder knows this backend is ``templated``: it makes the rows from the templates
directly and counts them as template rows.
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
from twinops.datasets.templates import generic_answer, passage_instruction
from twinops.datasets.text import key_phrases
from twinops.errors import ConfigError


class ExtractiveGenerator(Generator):
    name = "extractive"
    templated = True

    @property
    def version(self) -> str:
        return "2"

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
            return Generated.ok(passage_instruction(item["text"], item.get("title", ""), item["text"]))
        if prompt.id == SELF_INSTRUCT_PROMPT:
            seeds = load_seed_tasks().tasks
            styles = [seed for seed in seeds if seed.example == item["example"]] or list(seeds)
            phrases = key_phrases(item["text"], 1)
            return Generated.ok(styles[0].render(phrases[0]) if phrases else "")
        if prompt.id == ANSWER_PROMPT:
            return Generated.ok(generic_answer(item["instruction"], "", item["instruction"]))
        raise ConfigError(f"the extractive generator has no rule for prompt {prompt.id!r}")
