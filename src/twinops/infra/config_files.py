"""Job and config files: YAML read into a pydantic model, every problem as one ``ConfigError`` line.

The one reader for the YAML config files (``configs/``: ETL, features, datasets, training, gates,
drift; and the prompt and seed-task files): a missing file, YAML that does not parse, a top level
that is not a mapping, and a field that does not validate each say which file, which entry, and
what to fix. ``jsonl_rows`` reads the
JSONL files a user passes (texts to test for drift, questions for the datasets) the same way.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from twinops.errors import ConfigError, first_problem

ModelT = TypeVar("ModelT", bound=BaseModel)


def read_yaml_mapping(path: Path | str, *, what: str, shape: str = "a mapping of fields") -> dict[str, Any]:
    """The file's top-level mapping (an empty file is ``{}``); ``what`` names the file in errors."""
    path = Path(path)
    try:
        raw: Any = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError as error:
        raise ConfigError(f"{what} {path} does not exist: pass an existing YAML file") from error
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as error:
        reason = (str(error).splitlines() or [type(error).__name__])[0]
        raise ConfigError(f"{what} {path} is not readable YAML ({reason}): fix the file") from error
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{what} {path} must be {shape}, not a {type(raw).__name__}")
    return raw


def validate_config(
    model: type[ModelT], data: Mapping[str, Any], *, what: str, path: Path | str | None = None
) -> ModelT:
    """``model`` from ``data``; the first invalid entry becomes one ``ConfigError`` line."""
    try:
        return model.model_validate(data)
    except ValidationError as error:
        problem = first_problem(error)
        source = f"{what} {path}" if path is not None else what
        raise ConfigError(
            f"{source} is invalid: `{problem.where or '(top level)'}` {problem.message}; fix that entry"
        ) from error


def load_config(model: type[ModelT], path: Path | str, *, what: str) -> ModelT:
    """Read ``path`` and validate it as ``model``."""
    return validate_config(model, read_yaml_mapping(path, what=what), what=what, path=path)


def jsonl_rows(path: Path | str) -> Iterator[tuple[int, Any]]:
    """``(line number, value)`` of every non-blank line; a line that is not JSON is one ConfigError."""
    path = Path(path)
    with path.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                yield number, json.loads(line)
            except ValueError as error:
                raise ConfigError(
                    f"{path} line {number} is not JSON: {str(error).splitlines()[0]}"
                ) from error
