"""The twins one LLM server serves: each twin's champion LoRA adapter beside one base, followed live.

``--twins all`` serves every registered LLM twin (``twin-llm`` and ``twin-llm-<author>``, see
``twinops.domain.twins``) that has a ``champion``; ``--twins a,b`` the named ones (registered names
or author names). An entry may also be a registry URI of one version, ``models:/twin-llm-ada/5``:
that twin serves that version, **pinned**, and is not followed. A cluster's spec pins every twin
(what a server serves is written in its spec; only a release changes it), so the canary of one twin
is the stable predictor with that one entry changed: the other twins' adapters, and answers, are
the same on the canary's pods (``twinops.rollout.kserve``). A twin's registry version names its
unmerged LoRA adapter folder in the tag ``adapter_dir`` and the base it was trained on in
``base_model``.

``TwinAdapters.follow`` reads each unpinned twin's champion every ``poll_seconds``. When it moves, the new
adapter is checked and loaded beside the old one, and new requests go to it from then on; requests
already running finish on the old one, which is freed once none uses it. The time from seeing the
move to the switch is logged and observed in ``twinops_llm_adapter_switch_seconds``. A bad adapter
is refused in one line (logged, counted in ``twinops_llm_adapters_refused_total``), the old one keeps
serving, and the refused version is not tried again.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from twinops.domain.twins import is_twin_model_name, twin_model_name
from twinops.errors import ConfigError, NotFound, ServiceUnavailable, TwinopsError
from twinops.infra.registry import (
    ADAPTER_MISSING_TAG,
    ADAPTER_TAG,
    BASE_MODEL_TAG,
    CHAMPION,
    MODELS_SCHEME,
    client,
    fast_fail,
    parse_models_uri,
    version_by_alias,
)
from twinops.serving import metrics
from twinops.serving.adapters import AdapterRefused, MixedAdapterModel
from twinops.settings import Settings

log = logging.getLogger("twinops.serving")

ALL_TWINS = "all"
# The name the base model (no adapter) answers as on a server of twins (``--base_name``).
BASE_NAME = "base"
# A champion moved is serving within this plus the adapter's load time (the goal: 5 s).
DEFAULT_POLL_SECONDS = 2.0
# A replaced adapter is freed only after this long unused: a request that picked it just before
# the switch may not have reached the engine yet.
RETIRE_GRACE_SECONDS = 1.0


PINNED = "pinned"


@dataclass(frozen=True)
class ChampionAdapter:
    """A twin's champion version (or its pinned one) and the adapter it registered."""

    twin: str
    version: str
    adapter_dir: str
    base_model: str
    missing: str = ""  # why the version has no adapter on a base, as registration recorded it
    why: str = CHAMPION  # champion (followed) or pinned (named in --twins)

    @property
    def label(self) -> str:
        return f"{self.twin} v{self.version} [{self.why}]"

    @property
    def adapter_name(self) -> str:
        # PEFT keeps adapters in ModuleDicts, whose keys may not hold a '.'.
        return f"{self.twin}-v{self.version}"


def twin_pins(spec: str) -> dict[str, str]:
    """The twins ``--twins`` pins to a version (``models:/NAME/VERSION`` entries): name -> version.
    An entry that is a registry URI but not of one version (an alias) is refused in one line: the
    alias would move without the spec."""
    pins: dict[str, str] = {}
    for item in _items(spec) if spec.strip() != ALL_TWINS else []:
        if not item.startswith(MODELS_SCHEME):
            continue
        parts = parse_models_uri(item)
        if parts is None or parts.version is None or not is_twin_model_name(parts.name):
            raise ConfigError(
                f"--twins entry {item!r}: pin a twin's version as models:/twin-llm-NAME/VERSION (an alias "
                "moves without the spec: name the twin alone to follow its champion)",
                setting="--twins",
            )
        if pins.get(parts.name, parts.version) != parts.version:
            raise ConfigError(f"--twins pins {parts.name} twice: keep one entry per twin", setting="--twins")
        pins[parts.name] = parts.version
    return pins


def twin_names(spec: str, settings: Settings) -> list[str]:
    """The registered models ``--twins`` names: ``all`` (every twin with a champion) or a comma list
    of twin names and pinned versions (``twin_pins``)."""
    if spec.strip() == ALL_TWINS:
        from mlflow.exceptions import MlflowException

        with fast_fail():
            mlflow_client = client(settings)
            try:
                found = mlflow_client.search_registered_models()
            except MlflowException as error:
                raise ServiceUnavailable(
                    f"MLflow did not list the registered models ({str(error).splitlines()[0][:200]}): run "
                    "`twinops services up` or fix TWINOPS_MLFLOW_TRACKING_URI",
                    setting="TWINOPS_MLFLOW_TRACKING_URI",
                ) from error
            names = sorted(m.name for m in found if is_twin_model_name(m.name))
            twins = [
                n for n in names if version_by_alias(mlflow_client, n, CHAMPION, required=False) is not None
            ]
        if not twins:
            raise NotFound(
                "no LLM twin in the registry has a champion: register and release a twin first, or "
                "name the twins with --twins"
            )
        return twins
    twin_pins(spec)  # every URI entry pins a twin's version, or one line says why not
    twins = [twin_of_entry(item) for item in _items(spec)]
    if not twins:
        raise ConfigError("--twins is empty: pass `all` or a comma list of twin names", setting="--twins")
    return list(dict.fromkeys(twins))


def twin_of_entry(entry: str) -> str:
    """The registered twin a ``--twins`` entry names: a pinned URI's model, a twin's name, or an
    author's name (``twin-llm-<author>``)."""
    pinned = parse_models_uri(entry) if entry.startswith(MODELS_SCHEME) else None
    if pinned is not None:
        return pinned.name
    return entry if is_twin_model_name(entry) else twin_model_name(entry)


def _items(spec: str) -> list[str]:
    return [item.strip() for item in spec.split(",") if item.strip()]


def champion_adapter(mlflow_client, twin: str) -> ChampionAdapter | None:
    """The adapter ``twin``'s champion registered, or None when it has no champion (or MLflow is away)."""
    version = version_by_alias(mlflow_client, twin, CHAMPION, required=False)
    return None if version is None else _adapter_of(twin, version, CHAMPION)


def pinned_adapter(mlflow_client, twin: str, number: str) -> ChampionAdapter:
    """The adapter ``twin`` version ``number`` registered; NotFound in one line when there is none."""
    from mlflow.exceptions import MlflowException

    try:
        version = mlflow_client.get_model_version(twin, number)
    except MlflowException as error:
        raise NotFound(
            f"--twins pins {twin} v{number}, which the registry does not hold "
            f"({str(error).splitlines()[0][:160]}): pin a registered version",
            setting="--twins",
        ) from error
    return _adapter_of(twin, version, PINNED)


def _adapter_of(twin: str, version, why: str) -> ChampionAdapter:
    tags = version.tags or {}
    return ChampionAdapter(
        twin=twin,
        version=str(version.version),
        adapter_dir=tags.get(ADAPTER_TAG, ""),
        base_model=tags.get(BASE_MODEL_TAG, ""),
        missing=tags.get(ADAPTER_MISSING_TAG, ""),
        why=why,
    )


@dataclass
class _Retired:
    adapter: str
    unused_since: float | None = None


@dataclass
class TwinAdapters:
    """Which adapter each twin's new requests run on, kept on the registry's champion."""

    mixed: MixedAdapterModel
    settings: Settings
    twins: list[str]
    in_use: Callable[[str], bool] = field(default=lambda _adapter: False)
    poll_seconds: float = DEFAULT_POLL_SECONDS
    pinned: dict[str, str] = field(default_factory=dict)  # twin -> the version --twins pins
    serving: dict[str, ChampionAdapter] = field(default_factory=dict)
    refused: dict[str, str] = field(default_factory=dict)  # twin -> the version refused last
    _retired: list[_Retired] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def adapter_for(self, twin: str) -> str:
        """The adapter name new requests to ``twin`` run on (read once per request)."""
        return self.serving[twin].adapter_name

    def load_champions(self) -> None:
        """At start: every twin's champion adapter (its pinned version's, when pinned), or one line
        naming the twin that cannot serve."""
        with fast_fail():
            mlflow_client = client(self.settings)
            for twin in self.twins:
                pin = self.pinned.get(twin)
                champion = (
                    pinned_adapter(mlflow_client, twin, pin) if pin else champion_adapter(mlflow_client, twin)
                )
                if champion is None:
                    raise NotFound(
                        f"twin {twin!r} has no {CHAMPION} in the registry (or MLflow is unreachable): "
                        "release a version of it or leave it out of --twins",
                        setting="--twins",
                    )
                self._load(champion)
                self.serving[twin] = champion
                metrics.ADAPTER_VERSION.labels(model=twin).set(float(champion.version))
                log.info("%s: serving adapter %s", champion.label, champion.adapter_dir)

    def _load(self, champion: ChampionAdapter) -> None:
        if not champion.adapter_dir:
            why = f" ({champion.missing})" if champion.missing else ""
            raise AdapterRefused(
                f"{champion.label} has no LoRA adapter on a base{why}: register the twin with its "
                f"unmerged adapter folder (tag {ADAPTER_TAG}) to serve it beside other twins"
            )
        self.mixed.load(
            champion.adapter_name,
            Path(champion.adapter_dir),
            label=champion.label,
            base_model=champion.base_model,
        )

    # --- following the registry ---------------------------------------------------------------
    def refresh(self) -> list[str]:
        """One look at every twin's champion: switch those that moved; what happened, one line each."""
        events: list[str] = []
        try:
            with fast_fail():
                mlflow_client = client(self.settings)
                followed = [twin for twin in self.twins if twin not in self.pinned]
                champions = {twin: champion_adapter(mlflow_client, twin) for twin in followed}
        except TwinopsError as error:  # MLflow away: keep serving what is loaded
            log.warning("could not read the twins' champions (%s); serving the adapters loaded", error)
            return events
        for twin, champion in champions.items():
            current = self.serving[twin]
            if champion is None or champion.version == current.version:
                continue
            if self.refused.get(twin) == champion.version:
                continue
            events.append(self._switch(current, champion))
        self._free_retired()
        return events

    def _switch(self, current: ChampionAdapter, champion: ChampionAdapter) -> str:
        seen = time.perf_counter()
        try:
            self._load(champion)
        except AdapterRefused as error:
            self.refused[champion.twin] = champion.version
            metrics.ADAPTERS_REFUSED.labels(model=champion.twin).inc()
            line = f"refused {error}; {current.label.removesuffix(f' [{CHAMPION}]')} keeps serving"
            log.error("%s", line)
            return line
        self.serving[champion.twin] = champion  # new requests run on it from here
        seconds = time.perf_counter() - seen
        metrics.ADAPTER_SWITCH_SECONDS.labels(model=champion.twin).observe(seconds)
        metrics.ADAPTER_VERSION.labels(model=champion.twin).set(float(champion.version))
        self._retired.append(_Retired(current.adapter_name))
        moved = f"v{current.version} -> v{champion.version}"
        line = f"{champion.twin}: champion {moved}, new requests on its adapter after {seconds:.2f} s"
        log.info("%s", line)
        return line

    def _free_retired(self) -> None:
        now = time.monotonic()
        keep = []
        for retired in self._retired:
            if self.in_use(retired.adapter):
                retired.unused_since = None
            elif retired.unused_since is None:
                retired.unused_since = now
            elif now - retired.unused_since >= RETIRE_GRACE_SECONDS:
                self.mixed.unload(retired.adapter)
                log.info("freed adapter %s", retired.adapter)
                continue
            keep.append(retired)
        self._retired = keep

    def follow(self) -> None:
        """Poll the registry on a background thread until ``stop`` (not when every twin is pinned)."""
        if self._thread is not None or self.poll_seconds <= 0 or set(self.twins) <= set(self.pinned):
            return
        self._thread = threading.Thread(target=self._poll, name="twin-adapters", daemon=True)
        self._thread.start()

    def _poll(self) -> None:
        while not self._stop.wait(self.poll_seconds):
            try:
                self.refresh()
            except Exception:  # the poller must outlive any one bad look; the adapters loaded serve on
                log.exception("following the twins' champions failed once; trying again")

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None
