"""The read side of the MLflow model registry: what Training registered, as Serving and the rest read it.

Training registers ``twin-llm`` and ``twin-reranker`` versions (``twinops.training.registry``);
everything that only reads them lives here, on floor 1, so serving never imports training.

A version's weights are in a local folder named by its tag ``model_dir`` (``ModelVersion.source_uri``).
``resolve_model_uri`` turns the references a server accepts into that folder:

- ``models:/NAME@ALIAS`` and ``models:/NAME/VERSION``: a registered version;
- a folder with ``config.json``, ``bundled:NAME`` or a Hugging Face id (``twinops.models.resolve``).

Resolution fails with one line: ``NotFound`` for an unknown name, alias or version,
``ServiceUnavailable`` when MLflow cannot be reached. MLflow's HTTP client retries a refused
connection for minutes by default; ``resolve_model_uri`` and ``champion_or_none`` set
``MLFLOW_HTTP_REQUEST_MAX_RETRIES`` and ``MLFLOW_HTTP_REQUEST_TIMEOUT`` to small values for the
duration of the call (unless the environment sets them), so a server start with MLflow down fails
within seconds. The override is process-wide while it lasts: call these at start-up, not from
request handlers running beside other MLflow calls. Every registry write path (registration, the
gate, the manual promotion, evidence and metrics) is decorated with ``fails_fast``: the same
override, and an MLflow that does not answer ends it in one ``ServiceUnavailable`` line.
"""

from __future__ import annotations

import contextlib
import functools
import os
import re
from collections.abc import Callable, Iterator
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Any, NamedTuple, ParamSpec, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from twinops.domain.twins import DEFAULT_AUTHOR, is_twin_model_name, twin_model_name
from twinops.domain.versions import ModelVersion
from twinops.errors import ConfigError, ModelNotFound, NotFound, ServiceUnavailable
from twinops.infra.endpoints import mlflow_tracking_uri
from twinops.models.resolve import resolve_model
from twinops.settings import Settings

# The default author's twin (domain.twins): each other author's is twin_model_name(author).
LLM_MODEL = twin_model_name(DEFAULT_AUTHOR)
RERANKER_MODEL = "twin-reranker"
MODEL_NAMES = (LLM_MODEL, RERANKER_MODEL)
CHAMPION = "champion"
CHALLENGER = "challenger"
# On a version whose canary was rolled back (the reasons as its value): never nominated again.
REJECTED_TAG = "rejected"
METRIC_TAG = "metric."
# A twin's version points at its merged model (model_dir) and at its LoRA adapter on the shared base:
# ADAPTER_TAG names the adapter folder, BASE_MODEL_TAG the base it applies to (what a multi-adapter
# server loads once), ADAPTER_MERGES_TO the float model base + adapter equals (a GPTQ model_dir is
# its quantization), and ADAPTER_MISSING_TAG why a version has no adapter on a base.
ADAPTER_TAG = "adapter_dir"
BASE_MODEL_TAG = "base_model"
ADAPTER_MERGES_TO = "adapter_merges_to"
ADAPTER_MISSING_TAG = "adapter_dir.missing"
MODELS_SCHEME = "models:/"

# Retries and per-request seconds while resolving (see the module docstring).
FAST_FAIL_ENV = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": "5"}
# A write path's requests may take longer than a read's on a busy machine (a registration beside a
# training run): no retry either, but a slow answer is not taken for a dead server.
WRITE_REQUEST_TIMEOUT = 30
P = ParamSpec("P")
R = TypeVar("R")
_MODELS_URI = re.compile(r"^models:/(?P<name>[^/@\s]+)(?:@(?P<alias>[\w.-]+)|/(?P<version>\d+))$")


class ModelsUri(NamedTuple):
    """The parts of ``models:/NAME@ALIAS`` or ``models:/NAME/VERSION`` (one of alias and version)."""

    name: str
    alias: str | None
    version: str | None


def parse_models_uri(uri: str) -> ModelsUri | None:
    """``uri``'s parts, or None when it is no registry URI of a version or alias."""
    match = _MODELS_URI.match(uri.strip())
    return ModelsUri(match["name"], match["alias"], match["version"]) if match else None


class ResolvedModel(BaseModel):
    """A model reference resolved to a folder (or a Hugging Face id) that ``from_pretrained`` loads."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str | None = Field(None, description="Registered model name; None for a folder or HF id.")
    version: str | None = Field(None, description="Registered version number.")
    alias: str | None = Field(None, description="The alias the reference named, if it named one.")
    model_dir: str = Field(description="Folder with config.json, or a Hugging Face id.")
    label: str = Field(description="What serves, for logs and the request log: 'twin-llm v3 [champion]'.")


def use_tracking(settings: Settings) -> str:
    """Point the mlflow client at the configured tracking URI and return it."""
    import mlflow

    # MLflow prints run URLs on stdout when a run ends; stdout belongs to `--json` summaries.
    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
    uri = mlflow_tracking_uri(settings)
    mlflow.set_tracking_uri(uri)
    return uri


def client(settings: Settings):
    from mlflow import MlflowClient

    return MlflowClient(use_tracking(settings))


def resource_missing(error: Exception) -> bool:
    """Whether an ``MlflowException`` says the named object does not exist (not: MLflow failed)."""
    return getattr(error, "error_code", "") == "RESOURCE_DOES_NOT_EXIST"


def _first_line(error: Exception) -> str:
    return (str(error).splitlines() or [type(error).__name__])[0][:200]


def _unavailable(error: Exception, what: str) -> ServiceUnavailable:
    return ServiceUnavailable(
        f"MLflow registry error while reading {what} ({_first_line(error)}): run `twinops services up` "
        "or fix TWINOPS_MLFLOW_TRACKING_URI",
        setting="TWINOPS_MLFLOW_TRACKING_URI",
    )


def require_registered(mlflow_client: Any, name: str) -> None:
    from mlflow.exceptions import MlflowException

    try:
        mlflow_client.get_registered_model(name)
    except MlflowException as error:
        if resource_missing(error):
            raise NotFound(
                f"registered model {name!r} does not exist: train and register a version first "
                "(`twinops train dpo --register` / `twinops train reranker --register`)"
            ) from error
        raise _unavailable(error, repr(name)) from error


def version_by_alias(mlflow_client: Any, name: str, alias: str, *, required: bool = True):
    """The MLflow model version ``alias`` points to; ``None`` or one ``NotFound`` line when unset."""
    from mlflow.exceptions import MlflowException

    try:
        return mlflow_client.get_model_version_by_alias(name, alias)
    except MlflowException as error:
        if not required:
            return None
        raise NotFound(
            f"alias {alias!r} does not exist on registered model {name!r}: register a new version "
            f"(it becomes {CHALLENGER!r}) or check the name with `twinops registry list`"
        ) from error


def spend_challenger(mlflow_client: Any, name: str, version: str) -> bool:
    """Remove ``challenger`` when it names ``version``: a released or rejected version is no longer
    a nominee. True when it did."""
    aliases = mlflow_client.get_registered_model(name).aliases or {}
    if str(aliases.get(CHALLENGER)) != str(version):
        return False
    mlflow_client.delete_registered_model_alias(name, CHALLENGER)
    return True


class ReleasePath(StrEnum):
    """How a version became ``champion``: the one thing a reader of its history needs to trust it."""

    CANARY = "canary"  # the rollout's promote, after its canary passed
    NO_CANARY = "no-canary"  # a model with no canary (the reranker), released by its gate
    MANUAL = "manual"  # `twinops registry promote`: a person decided, with a reason


RELEASED_TAG = "released"  # why (one line), on the version
RELEASED_BY_TAG = "released.by"  # a ReleasePath, on the version
LAST_RELEASE_TAG = "last_release"  # "vN <why>", on the registered model


def record_release(mlflow_client: Any, name: str, version: str, *, path: ReleasePath, why: str) -> None:
    """Make ``version`` the champion and say how and why, the same way on every release path.

    The tags go first and the alias last, so a crash in between leaves a version that says it was
    released while ``champion`` still names the old one: running the release again converges."""
    version = str(version)
    mlflow_client.set_model_version_tag(name, version, RELEASED_TAG, why[:5000])
    mlflow_client.set_model_version_tag(name, version, RELEASED_BY_TAG, path.value)
    mlflow_client.set_registered_model_tag(name, LAST_RELEASE_TAG, f"v{version} ({path.value}) {why}"[:5000])
    mlflow_client.set_registered_model_alias(name, CHAMPION, version)
    spend_challenger(mlflow_client, name, version)


def version_metrics(mlflow_version: Any, mlflow_client: Any) -> dict[str, float]:
    """``metric.*`` tags of the version, over the metrics of the run that produced it."""
    metrics: dict[str, float] = {}
    if mlflow_version.run_id:
        from mlflow.exceptions import MlflowException

        # A deleted run leaves the tags as the only record.
        with contextlib.suppress(MlflowException):
            metrics.update(mlflow_client.get_run(mlflow_version.run_id).data.metrics)
    for key, value in (mlflow_version.tags or {}).items():
        if key.startswith(METRIC_TAG):
            try:
                metrics[key.removeprefix(METRIC_TAG)] = float(value)
            except ValueError:
                continue
    return metrics


def to_model_version(mlflow_version: Any, mlflow_client: Any) -> ModelVersion:
    tags = mlflow_version.tags or {}
    ids = tuple(i for i in tags.get("dataset_version_ids", "").split(",") if i)
    return ModelVersion(
        name=mlflow_version.name,
        version=str(mlflow_version.version),
        source_uri=tags.get("model_dir", mlflow_version.source),
        base_model=tags.get(BASE_MODEL_TAG, ""),
        adapter_dir=tags.get(ADAPTER_TAG) or None,
        dataset_version_ids=ids,
        metrics=version_metrics(mlflow_version, mlflow_client),
        aliases=tuple(sorted(mlflow_version.aliases or ())),
        created_at=datetime.fromtimestamp(mlflow_version.creation_timestamp / 1000).astimezone(),
    )


def list_versions(settings: Settings, names: tuple[str, ...] = MODEL_NAMES) -> list[ModelVersion]:
    """Every version of the named registered models (missing models are skipped), newest first.

    An unreachable MLflow is ``ServiceUnavailable`` within seconds (``fast_fail``), never an empty list.
    """
    from mlflow.exceptions import MlflowException

    versions: list[ModelVersion] = []
    with fast_fail():
        mlflow_client = client(settings)
        for name in names:
            try:
                # Search results may omit aliases; the registered model has them all.
                aliases = mlflow_client.get_registered_model(name).aliases or {}
                found = mlflow_client.search_model_versions(f"name = '{name}'")
            except MlflowException as error:
                if resource_missing(error):
                    continue
                raise _unavailable(error, f"registered model {name!r}") from error
            for found_version in found:
                version = to_model_version(found_version, mlflow_client)
                held = tuple(sorted(a for a, v in aliases.items() if str(v) == version.version))
                versions.append(version.model_copy(update={"aliases": held}))
    return sorted(versions, key=lambda v: (v.name, -int(v.version)))


def twin_names(settings: Settings) -> list[str]:
    """The registered LLM twins (``twin-llm`` and every ``twin-llm-<author>``), sorted."""
    from mlflow.exceptions import MlflowException

    names: list[str] = []
    with fast_fail():
        mlflow_client, token = client(settings), None
        while True:
            try:
                page = mlflow_client.search_registered_models(
                    f"name LIKE '{twin_model_name(None)}%'", page_token=token
                )
            except MlflowException as error:
                raise _unavailable(error, "the registered twins") from error
            names += [model.name for model in page if is_twin_model_name(model.name)]
            token = page.token
            if not token:
                return sorted(names)


@contextlib.contextmanager
def fast_fail(request_timeout: int | None = None) -> Iterator[None]:
    """MLflow HTTP calls inside fail at once when the server is down, instead of retrying for minutes.

    ``request_timeout``: seconds one request may take (default ``FAST_FAIL_ENV``'s); a refused
    connection fails at once whatever it is."""
    wanted = dict(FAST_FAIL_ENV)
    if request_timeout is not None:
        wanted["MLFLOW_HTTP_REQUEST_TIMEOUT"] = str(request_timeout)
    added = [key for key in wanted if key not in os.environ]
    for key in added:
        os.environ[key] = wanted[key]
    try:
        yield
    finally:
        for key in added:
            os.environ.pop(key, None)


def _failed_to_answer(error: Exception) -> bool:
    """MLflow's HTTP client could not get an answer (refused, reset, timed out, 5xx after retries)."""
    import requests

    if isinstance(error, requests.RequestException):
        return True
    message = str(error)
    return getattr(error, "error_code", "") in ("INTERNAL_ERROR", "TEMPORARILY_UNAVAILABLE") and (
        message.startswith("API request to")
    )


def fails_fast(what: str) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Decorate a registry write path: its MLflow calls run under ``fast_fail``, and an MLflow that
    does not answer ends it in one ``ServiceUnavailable`` line naming ``what``, within seconds
    instead of minutes of retries. (What was written before the server went away stays written;
    each write path says what it writes first.)"""

    def decorate(function: Callable[P, R]) -> Callable[P, R]:
        @functools.wraps(function)
        def wrapped(*args: P.args, **kwargs: P.kwargs) -> R:
            import requests
            from mlflow.exceptions import MlflowException

            with fast_fail(WRITE_REQUEST_TIMEOUT):
                try:
                    return function(*args, **kwargs)
                except (MlflowException, requests.RequestException) as error:
                    if not _failed_to_answer(error):
                        raise
                    raise ServiceUnavailable(
                        f"MLflow did not answer while {what} ({_first_line(error)}): run `twinops services "
                        "up` or fix TWINOPS_MLFLOW_TRACKING_URI, then run the command again",
                        setting="TWINOPS_MLFLOW_TRACKING_URI",
                    ) from error

        return wrapped

    return decorate


def _names_a_missing_object(error: Exception) -> bool:
    """An MLflow answer about the request (no such name, alias or version), not a failure to answer.

    A missing alias comes back as INVALID_PARAMETER_VALUE; an unreachable server as INTERNAL_ERROR.
    """
    return getattr(error, "error_code", "") in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE")


def _registered_version(
    mlflow_client: Any, name: str, *, alias: str | None, version: str | None, setting: str
):
    """The MLflow version for ``name@alias`` or ``name/version``; one line naming what to fix."""
    from mlflow.exceptions import MlflowException

    try:
        mlflow_client.get_registered_model(name)
    except MlflowException as error:
        if resource_missing(error):
            raise NotFound(
                f"registered model {name!r} does not exist: fix {setting} or register a version "
                "(`twinops train dpo --register`); see `twinops registry list`",
                setting=setting,
            ) from error
        raise _unavailable(error, f"registered model {name!r}") from error
    try:
        if alias is not None:
            return mlflow_client.get_model_version_by_alias(name, alias)
        return mlflow_client.get_model_version(name, version)
    except MlflowException as error:
        if not _names_a_missing_object(error):
            raise _unavailable(error, f"registered model {name!r}") from error
        what = f"alias {alias!r}" if alias is not None else f"version {version}"
        raise NotFound(
            f"{what} does not exist on registered model {name!r}: fix {setting} "
            "(see `twinops registry list`)",
            setting=setting,
        ) from error


def registered_version(uri: str, settings: Settings, *, setting: str) -> tuple[ModelVersion, str | None]:
    """The version ``models:/NAME@ALIAS`` or ``models:/NAME/VERSION`` names, and the alias if any.

    Only the registry is asked: the version's folder may live on another machine's volume.
    """
    parts = parse_models_uri(uri)
    if parts is None:
        raise ConfigError(
            f"model URI {uri!r} is not valid: use models:/NAME@ALIAS or models:/NAME/VERSION "
            f"(e.g. models:/{LLM_MODEL}@{CHAMPION}) in {setting}",
            setting=setting,
        )
    name, alias, number = parts
    with fast_fail():
        mlflow_client = client(settings)
        found = _registered_version(mlflow_client, name, alias=alias, version=number, setting=setting)
        return to_model_version(found, mlflow_client), alias


def _resolve_registered(uri: str, settings: Settings, *, setting: str) -> ResolvedModel:
    version, alias = registered_version(uri, settings, setting=setting)
    name = version.name
    folder = Path(version.source_uri)
    label = f"{name} v{version.version}" + (f" [{alias}]" if alias else "")
    if not (folder / "config.json").exists():
        raise ModelNotFound(
            f"{label} points to {folder}, which has no config.json: copy the model folder there "
            f"or pass a model folder in {setting}",
            setting=setting,
        )
    return ResolvedModel(name=name, version=version.version, alias=alias, model_dir=str(folder), label=label)


def resolve_model_uri(uri: str, settings: Settings, *, setting: str) -> ResolvedModel:
    """Resolve a registry URI, a folder, ``bundled:NAME`` or an HF id; errors name ``setting``."""
    if uri.startswith(MODELS_SCHEME):
        return _resolve_registered(uri, settings, setting=setting)
    model_dir = resolve_model(uri, settings, setting=setting)
    return ResolvedModel(model_dir=model_dir, label=model_dir)


def champion_or_none(name: str, settings: Settings, *, setting: str = "--model-dir") -> ResolvedModel | None:
    """The ``champion`` of ``name``, or None when the model or its champion alias does not exist.

    MLflow being unreachable is not "no champion" (``ServiceUnavailable``), nor is a champion whose
    folder is gone (``ModelNotFound``): serving something else would hide either.
    """
    return alias_or_none(name, CHAMPION, settings, setting=setting)


def alias_or_none(
    name: str, alias: str, settings: Settings, *, setting: str = "--model-dir"
) -> ResolvedModel | None:
    """The version ``alias`` names (resolved to its folder), or None when the model or alias does not
    exist; an unreachable MLflow or a missing folder raise, as for ``champion_or_none``."""
    try:
        return resolve_model_uri(f"{MODELS_SCHEME}{name}@{alias}", settings, setting=setting)
    except NotFound:
        return None
