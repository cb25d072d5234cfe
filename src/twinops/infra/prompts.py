"""The prompt registry: versioned prompt templates kept as YAML files in a package folder.

A template has an ``id``, an integer ``version``, the ``variables`` it takes, the ``output`` field
a JSON-speaking backend must return, and a content hash over everything that shapes generation,
so a dataset or a served answer records exactly which prompt produced it (``prompt:<id>@<hash>``).
Each stage keeps its templates next to its own code (``datasets/prompts/``, ``serving/prompts/``)
and loads them with ``load_prompt(prompt_id, folder)``.
"""

from __future__ import annotations

import json
import string
from functools import cache
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, model_validator

from twinops.domain.hashing import content_hash
from twinops.errors import ConfigError, NotFound
from twinops.infra.config_files import read_yaml_mapping, validate_config


def template_fields(template: str) -> set[str]:
    """The ``{names}`` a format string uses."""
    return {name for _, name, _, _ in string.Formatter().parse(template) if name}


class PromptTemplate(BaseModel):
    """One versioned chat prompt: a system message and a user message with ``{variables}``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str
    version: int = Field(ge=1)
    description: str = ""
    variables: tuple[str, ...]
    output: str = Field(description="The JSON key holding the answer (JSON-speaking backends).")
    max_new_tokens: int = Field(64, ge=1)
    system: str = ""
    user: str
    json_suffix: str = ""
    shots: tuple[dict[str, str], ...] = Field(
        (), description="Worked examples (variables + output) sent as earlier turns; small models need them."
    )

    @model_validator(mode="after")
    def _variables_match(self) -> PromptTemplate:
        used = template_fields(self.system) | template_fields(self.user)
        if used != set(self.variables):
            raise ValueError(f"prompt {self.id}: template uses {sorted(used)} but declares {self.variables}")
        for shot in self.shots:
            if set(shot) != {*self.variables, self.output}:
                raise ValueError(f"prompt {self.id}: each shot needs {[*self.variables, self.output]}")
        return self

    @property
    def content_hash(self) -> str:
        """A hash over every field, so editing a template without bumping its version still shows."""
        return content_hash(self.model_dump(mode="json"))[:16]

    @property
    def ref(self) -> str:
        """The lineage reference stored in DatasetVersion parents."""
        return f"prompt:{self.id}@{self.content_hash}"

    def messages(self, variables: dict[str, str], *, json_output: bool = False) -> list[dict[str, str]]:
        """Chat messages with ``variables`` filled in; ``json_output`` appends the JSON instruction."""
        missing = set(self.variables) - set(variables)
        if missing:
            raise ConfigError(f"prompt {self.id} needs variables {sorted(missing)}")
        values = {name: variables[name] for name in self.variables}
        messages = [{"role": "system", "content": self.system.format(**values)}] if self.system else []
        for shot in self.shots:
            reply = json.dumps({self.output: shot[self.output]}) if json_output else shot[self.output]
            messages.append({"role": "user", "content": self._user(shot, json_output=json_output)})
            messages.append({"role": "assistant", "content": reply})
        messages.append({"role": "user", "content": self._user(values, json_output=json_output)})
        return messages

    def _user(self, values: dict[str, str], *, json_output: bool) -> str:
        user = self.user.format(**{name: values[name] for name in self.variables})
        return user + self.json_suffix.format() if json_output and self.json_suffix else user


@cache
def load_prompt(prompt_id: str, directory: Path) -> PromptTemplate:
    """The template whose ``id`` is ``prompt_id`` among the YAML files of ``directory``."""
    for path in sorted(directory.glob("*.yaml")):
        data = read_yaml_mapping(path, what="prompt file")
        if data.get("id") == prompt_id and "user" in data:
            return validate_config(PromptTemplate, data, what="prompt file", path=path)
    raise NotFound(f"prompt {prompt_id!r} is not in {directory}: add a YAML file with that id")
