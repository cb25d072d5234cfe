"""The datasets stage's prompt templates: YAML files next to this module, read through the prompt
registry (``twinops.infra.prompts``: ``PromptTemplate``, versioned, content-hashed), plus the seed
tasks of Self-Instruct augmentation.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, model_validator

from twinops.domain.hashing import content_hash
from twinops.infra import prompts as registry
from twinops.infra.config_files import load_config
from twinops.infra.prompts import PromptTemplate, template_fields

PROMPTS_DIR = Path(__file__).resolve().parent


def load_prompt(prompt_id: str, directory: Path = PROMPTS_DIR) -> PromptTemplate:
    """The template ``prompt_id`` among the datasets' YAML files (or those of ``directory``)."""
    return registry.load_prompt(prompt_id, directory)


class SeedTask(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    style: str
    example_topic: str

    @model_validator(mode="after")
    def _has_topic(self) -> SeedTask:
        if template_fields(self.style) != {"topic"}:
            raise ValueError(f"seed task style {self.style!r} must have exactly one {{topic}} slot")
        return self

    def render(self, topic: str) -> str:
        return self.style.format(topic=topic)

    @property
    def example(self) -> str:
        return self.render(self.example_topic)


class SeedTasks(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str
    version: int
    tasks: tuple[SeedTask, ...] = Field(min_length=1)

    @property
    def ref(self) -> str:
        return f"prompt:{self.id}@{content_hash(self.model_dump(mode='json'))[:16]}"


@cache
def load_seed_tasks(directory: Path = PROMPTS_DIR) -> SeedTasks:
    return load_config(SeedTasks, directory / "seed_tasks.yaml", what="seed task file")


INSTRUCTION_PROMPT = "instruction-backtranslation"
SELF_INSTRUCT_PROMPT = "instruction-self-instruct"
ANSWER_PROMPT = "answer-base-model"
