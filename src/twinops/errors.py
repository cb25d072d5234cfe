"""Errors a user can fix: each carries one line saying what is wrong and what to change."""

from __future__ import annotations

from typing import Any, NamedTuple


class TwinopsError(Exception):
    """A problem with input, settings or the environment that the user can fix.

    The CLI prints ``str(error)`` on one line and exits with code 2 (no traceback unless
    ``--debug``). ``setting`` names the ``TWINOPS_*`` variable or flag to change, when one applies.
    """

    exit_code = 2

    def __init__(self, message: str, *, setting: str | None = None) -> None:
        super().__init__(message)
        self.setting = setting

    def __str__(self) -> str:
        message = super().__str__()
        if self.setting and self.setting not in message:
            return f"{message} (set {self.setting})"
        return message


class ConfigError(TwinopsError):
    """A setting or config file is invalid."""


class ServiceUnavailable(TwinopsError):
    """A service (MongoDB, Qdrant, MLflow, ...) cannot be reached or started."""


class ModelNotFound(TwinopsError):
    """A configured model id or path cannot be loaded offline."""


class NotFound(TwinopsError):
    """A named object (dataset version, run, alias, pipeline) does not exist."""


class JobFailed(TwinopsError):
    """Work handed to the cluster (a Kubeflow TrainJob) failed; the message carries the job's reason."""


class FieldProblem(NamedTuple):
    """The first thing pydantic found wrong with some input, as the parts of one line.

    Every boundary that validates input (settings, config files, job options, request bodies)
    turns a ``ValidationError`` into one line through ``first_problem``, each in its own words
    around the same parts.
    """

    where: str  # the dotted location (``trainer.max_steps``); empty at the top level
    message: str  # pydantic's complaint, without its ``Value error, `` prefix
    value: Any  # what was given there
    kind: str  # pydantic's error type (``missing``, ``int_parsing``, ``json_invalid``, ...)
    others: int  # how many more problems the input has

    def line(self, *, top: str = "") -> str:
        """``where: message`` (``top`` names the location when the problem is the whole input)."""
        where = self.where or top
        return f"{where}: {self.message}" if where else self.message


def first_problem(error: Any, *, skip: tuple[str, ...] = ()) -> FieldProblem:
    """The first problem of a pydantic ``ValidationError`` (or FastAPI's ``RequestValidationError``);
    location parts in ``skip`` (FastAPI's ``body`` root) are left out of ``where``."""
    problems = error.errors()
    first = problems[0] if problems else {}
    where = ".".join(str(part) for part in first.get("loc", ()) if part not in skip)
    message = str(first.get("msg", "invalid value")).removeprefix("Value error, ")
    return FieldProblem(
        where, message, first.get("input"), str(first.get("type", "")), max(len(problems) - 1, 0)
    )
