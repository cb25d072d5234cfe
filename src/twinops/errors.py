"""Errors a user can fix: each carries one line saying what is wrong and what to change."""

from __future__ import annotations


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
