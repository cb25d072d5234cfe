"""The canary on one machine: the controller sets the local router's weights instead of patching.

``twinops serve llm --canary-dir DIR`` runs the stable and the canary LLM servers behind the
weighted router (``twinops.serving.router``). ``LocalRouterTarget`` drives the router's admin
routes (``GET /router/state``, ``POST /router/config``) the way ``KServeTarget`` patches an
InferenceService: step up sets the canary's percent, promote makes the canary the stable backend,
roll back sets the percent to 0. The rollout state is a JSON file under ``TWINOPS_HOME/rollout/``.
``runner.release_challenger`` is the local loop's release (``twinops run``) over this target.

The state file and the router are two writes, so the state is written first and the router's
whole configuration is then derived from it (``router_config``: declarative, so applying it twice
changes nothing); ``reconcile`` re-applies it, and the controller calls it whenever it (re)starts
driving, so a crash between the two writes converges. One driver at a time: a file lock beside
the state file (``FileLease``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx

from twinops.errors import ConfigError, ServiceUnavailable
from twinops.rollout.health import CanaryEndpoint
from twinops.rollout.lease import FileLease
from twinops.rollout.state import Decision, Mode, RolloutState
from twinops.settings import Settings

ROUTER_FLAG = "--router"


class LocalRouterTarget:
    def __init__(self, router_url: str, settings: Settings, *, name: str, model_name: str) -> None:
        self.router_url = router_url.rstrip("/")
        self.name = name
        self.namespace = "local"
        self.model_name = model_name
        self.state_file: Path = settings.home / "rollout" / f"{name}.json"

    def _request(self, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        url = f"{self.router_url}{path}"
        try:
            response = httpx.request(method, url, json=body, timeout=10)
        except httpx.HTTPError as error:
            raise ServiceUnavailable(
                f"the local router at {self.router_url} is unreachable ({type(error).__name__}): start it "
                f"with `twinops serve llm --canary-dir DIR`, or fix {ROUTER_FLAG}"
            ) from error
        if response.status_code >= 400:
            raise ConfigError(f"the local router refused {method} {path}: {response.text[:200]}")
        return response.json()

    def router_state(self) -> dict[str, Any]:
        return self._request("GET", "/router/state")

    def load(self) -> RolloutState | None:
        if not self.state_file.exists():
            return None
        return RolloutState.model_validate_json(self.state_file.read_text(encoding="utf-8"))

    def check_start(self, model_uri: str | None = None) -> tuple[dict[str, Any], Mode]:
        router = self.router_state()
        if not router.get("canary"):
            raise ConfigError(
                f"the local router at {self.router_url} has no canary backend: start it with "
                "`twinops serve llm --canary-dir DIR`"
            )
        scoped = router.get("canary_model")
        if scoped and scoped != self.model_name:
            raise ConfigError(
                f"the local router's canary is {scoped}'s, not {self.model_name}'s: roll out {scoped} "
                f"(--model-name {scoped}), or restart the canary for {self.model_name}"
            )
        existing = self.load()
        if existing is not None and not existing.finished:
            raise ConfigError(
                f"a rollout is already running on the local router ({self.state_file}): see "
                f"`twinops rollout status --isvc {self.name} {ROUTER_FLAG} {self.router_url}`"
            )
        return router, "local"

    def stable_url(self) -> str:
        return self.router_state()["stable"]

    def canary(self, state: RolloutState) -> CanaryEndpoint:
        url = self.router_state().get("canary") or state.previous_predictor.get("canary")
        model = state.served_model or self.model_name
        return CanaryEndpoint(url=url, model=model, workload="canary", namespace=self.namespace)

    def _save(self, state: RolloutState) -> None:
        self.state_file.parent.mkdir(parents=True, exist_ok=True)
        partial = self.state_file.with_suffix(".json.tmp")
        partial.write_text(state.model_dump_json(indent=2), encoding="utf-8")
        partial.replace(self.state_file)

    def lease(self) -> FileLease:
        return FileLease(self.state_file.with_suffix(".lock"))

    @staticmethod
    def router_config(state: RolloutState) -> dict[str, Any]:
        """The router's whole configuration for ``state``. Promoted: a whole-server canary becomes
        the stable; one twin's canary (``canary_model``) is dropped and the stable server, which
        follows that twin's champion, keeps serving every twin."""
        previous = state.previous_predictor
        stable, canary, model = previous.get("stable"), previous.get("canary"), previous.get("canary_model")
        if state.phase == "promoted":
            return {
                "stable": stable if model else canary,
                "canary": None,
                "canary_percent": 0,
                "canary_model": None,
            }
        return {"stable": stable, "canary": canary, "canary_percent": state.percent, "canary_model": model}

    def reconcile(self, state: RolloutState) -> None:
        self._request("POST", "/router/config", self.router_config(state))

    def begin(self, state: RolloutState, router: dict[str, Any]) -> RolloutState:
        previous = {key: router.get(key) for key in ("stable", "canary", "canary_percent", "canary_model")}
        state = state.model_copy(update={"previous_predictor": previous})
        self._save(state)
        self.reconcile(state)
        return state

    def apply(self, state: RolloutState, decision: Decision) -> None:
        self._save(state)
        self.reconcile(state)

    def record(self, state: RolloutState) -> None:
        self._save(state)
