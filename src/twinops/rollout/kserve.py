"""The canary on a KServe InferenceService, through the official ``kubernetes`` client.

The deployment mode comes from the resource: the ``serving.kserve.io/deploymentMode`` annotation
(``Serverless``/``Knative`` or ``RawDeployment``/``Standard``), else ``status.deploymentMode``,
else KServe's default, Standard. Each mode has its own mechanism, and each ignores the other's:

- **Knative** (Serverless): ``spec.predictor.canaryTrafficPercent`` splits traffic between the
  last rolled-out revision and the new one. The start patch changes the model and turns on tag
  routing (``serving.kserve.io/enable-tag-routing``), so the canary answers on its own
  ``latest-`` URL (``status.components.predictor.traffic[tag=latest].url``), where it is scored.
  Promote removes ``canaryTrafficPercent`` (the latest revision takes all traffic); roll back
  restores the previous predictor with ``canaryTrafficPercent: 0``, so the last rolled-out
  revision keeps all traffic while the restored one starts.
- **Standard** (raw Deployment): ``spec.canary[]`` holds a named predictor and its
  ``trafficPercent``; KServe runs it as ``{isvc}-{name}-predictor`` and splits traffic by Gateway
  API HTTPRoute weights. The canary predictor is the stable one with the new model, without the
  autoscaling fields KServe's webhook refuses on a canary (it runs fixed replicas); its ``model``
  carries the ``name`` and ``modelFormat`` that the CRD requires there. Promote writes the pinned
  model into ``spec.predictor`` (keeping the stable's name and scaling) and empties
  ``spec.canary``; roll back empties ``spec.canary``.

Every decision is **one** JSON merge patch that carries the traffic change and the rollout state
(annotations) together, and the ``metadata.resourceVersion`` the decision was based on: a patch
based on a stale read is refused (409) instead of overwriting another writer's change. A crash
between two decisions therefore leaves the service and its recorded state in agreement. A
combination KServe would ignore silently is refused in one line: ``canaryTrafficPercent`` on a
Standard-mode service, ``spec.canary[]`` on a Knative one. Each decision is also a Kubernetes
Event when the service account may create events (without ``create`` on events the annotation is
the record).
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
from collections.abc import Callable
from datetime import datetime
from typing import Any

from twinops.errors import ConfigError, NotFound, ServiceUnavailable
from twinops.infra.registry import parse_models_uri
from twinops.rollout.health import CanaryEndpoint
from twinops.rollout.lease import KubeLease, StaleRead
from twinops.rollout.state import Decision, Mode, RolloutState, now
from twinops.serving.twins import twin_of_entry

GROUP, VERSION, PLURAL, KIND = "serving.kserve.io", "v1beta1", "inferenceservices", "InferenceService"
DEPLOYMENT_MODE = "serving.kserve.io/deploymentMode"
TAG_ROUTING = "serving.kserve.io/enable-tag-routing"
STATE_ANNOTATION = "rollout.twinops.io/state"
DECISION_ANNOTATION = "rollout.twinops.io/last-decision"
TWINS_FLAG = "--twins"  # the twinops runtime's list of twins on one base (twinops.serving.twins)
_MODES: dict[str, Mode] = {
    "Serverless": "Knative",
    "Knative": "Knative",
    "RawDeployment": "Standard",
    "Standard": "Standard",
}
# Fields KServe's webhook refuses on a spec.canary[] predictor (canaries run fixed replicas), and
# the ones that belong to the stable predictor only.
_NOT_ON_CANARY = (
    "name",
    "minReplicas",
    "maxReplicas",
    "scaleTarget",
    "scaleMetric",
    "scaleMetricType",
    "autoScaling",
    "canaryTrafficPercent",
    "workerSpec",
)
_EVENT_REASONS = {
    "start": "RolloutStarted",
    "step_up": "RolloutStepUp",
    "hold": "RolloutHeld",
    "pause": "RolloutPaused",
    "promote": "RolloutPromoted",
    "rollback": "RolloutRolledBack",
}
# The container name KServe gives a predictor's model container when the spec names none; the
# CRD requires a name on a canary's model.
DEFAULT_CONTAINER = "kserve-container"


def merge_patch(current: Any, target: Any) -> Any:
    """The JSON merge patch (RFC 7386) that turns ``current`` into ``target`` (None removes a key)."""
    if not isinstance(current, dict) or not isinstance(target, dict):
        return copy.deepcopy(target)
    patch: dict[str, Any] = {key: None for key in current if key not in target}
    for key, value in target.items():
        if key not in current:
            patch[key] = copy.deepcopy(value)
        elif current[key] != value:
            patch[key] = merge_patch(current[key], value)
    return patch


def _twins_argument(args: list[str]) -> tuple[int, str] | None:
    """(index of the value, the value) of the runtime's ``--twins`` argument, if it has one."""
    for index, arg in enumerate(args):
        if arg.startswith(f"{TWINS_FLAG}="):
            return index, arg.split("=", 1)[1]
        if arg == TWINS_FLAG and index + 1 < len(args):
            return index + 1, args[index + 1]
    return None


def with_twin_version(args: list[str], uri: str, *, where: str) -> list[str] | None:
    """``args`` with the ``--twins`` entry of ``uri``'s twin pinned to ``uri``; None without ``--twins``.

    On a server of many twins, the rest of the list is left as it is, byte for byte: the canary's
    pods serve every other twin on the same adapter as the stable's, so one twin's release leaves
    the others' answers unchanged (``twinops.serving.twins``)."""
    found = _twins_argument(args)
    if found is None:
        return None
    position, value = found
    parts = parse_models_uri(uri)
    if parts is None or parts.version is None:
        raise ConfigError(
            f"{where} serves many twins (--twins): roll out one twin's registered version, "
            f"models:/twin-llm-NAME/VERSION, not {uri}"
        )
    entries = [entry.strip() for entry in value.split(",") if entry.strip()]
    matching = [index for index, entry in enumerate(entries) if twin_of_entry(entry) == parts.name]
    if not matching:
        raise ConfigError(
            f"{where} serves the twins {', '.join(map(twin_of_entry, entries))}, not {parts.name}: a "
            f"twin's first version is added to --twins in the spec ({uri}), not canaried"
        )
    entries[matching[0]] = uri
    updated = list(args)
    if args[position].startswith(f"{TWINS_FLAG}="):
        updated[position] = f"{TWINS_FLAG}={','.join(entries)}"
    else:
        updated[position] = ",".join(entries)
    return updated


def with_model_uri(predictor: dict[str, Any], uri: str, *, where: str) -> dict[str, Any]:
    """``predictor`` serving ``uri``: on a server of many twins its twin's ``--twins`` entry
    (``with_twin_version``), else the runtime's ``--model_uri`` argument, else ``model.storageUri``."""
    updated = copy.deepcopy(predictor)
    model = updated.get("model")
    if not isinstance(model, dict):
        raise ConfigError(f"{where} has no spec.predictor.model: twinops rolls out predictor.model only")
    args = list(model.get("args") or [])
    twins = with_twin_version(args, uri, where=where)
    if twins is not None:
        model["args"] = twins
        return updated
    for index, arg in enumerate(args):
        if arg.startswith("--model_uri="):
            args[index] = f"--model_uri={uri}"
            break
        if arg == "--model_uri" and index + 1 < len(args):
            args[index + 1] = uri
            break
    else:
        if uri.startswith("models:/"):
            raise ConfigError(
                f"{where} loads its model from spec.predictor.model.storageUri, which cannot read {uri}: "
                "pass a storage URI (s3://, gs://, pvc://, hf://) or serve with the twinops runtime"
            )
        model["storageUri"] = uri
        return updated
    if not uri.startswith("models:/"):
        raise ConfigError(
            f"{where} loads its model with the twinops runtime's --model_uri, which reads registry URIs: "
            f"pass models:/NAME@ALIAS or models:/NAME/VERSION instead of {uri}"
        )
    model["args"] = args
    return updated


def _annotations(obj: dict[str, Any]) -> dict[str, str]:
    return (obj.get("metadata") or {}).get("annotations") or {}


def deployment_mode(obj: dict[str, Any]) -> Mode:
    """Knative or Standard, from the annotation, else the status, else KServe's default (Standard)."""
    raw = _annotations(obj).get(DEPLOYMENT_MODE) or (obj.get("status") or {}).get("deploymentMode") or ""
    if not raw:
        return "Standard"
    if raw not in _MODES:
        name = (obj.get("metadata") or {}).get("name")
        raise ConfigError(
            f"InferenceService {name} runs in deployment mode {raw!r}: canary rollouts need Knative "
            "(Serverless) or Standard (RawDeployment)"
        )
    return _MODES[raw]


def canary_name_for(state: RolloutState, stable_name: str | None) -> str:
    """A DNS-safe name for the spec.canary[] predictor: ``v7`` for a registry version, else a hash."""
    name = (
        f"v{state.registry_version}"
        if state.registry_version
        else "c" + hashlib.sha256(state.model_uri.encode()).hexdigest()[:8]
    )
    return f"{name}-canary" if name == stable_name else name


class KServeTarget:
    """One InferenceService in one namespace, read and patched through ``CustomObjectsApi``."""

    def __init__(
        self,
        name: str,
        namespace: str,
        *,
        api: Any,
        core: Any | None = None,
        coordination: Any | None = None,
        model_name: str | None = None,
        on_event: Callable[[str], None] | None = None,
        lease_holder: str | None = None,
        clock: Callable[[], datetime] = now,
    ) -> None:
        self.name = name
        self.namespace = namespace
        self.api = api
        self.core = core
        self.coordination = coordination
        self.lease_holder = lease_holder  # default: this pod (POD_NAME) and process
        self.clock = clock
        # The last object read: every patch is based on it (its resourceVersion), never on a
        # fresher read that would hide another writer's change.
        self.last_read: dict[str, Any] | None = None
        self.resource_version: str | None = None
        self.model_name = model_name or name
        self.on_event = on_event or (lambda _message: None)
        self._events_allowed = core is not None

    @property
    def where(self) -> str:
        return f"InferenceService {self.namespace}/{self.name}"

    # --- reading -------------------------------------------------------------------------------

    def _call(self, what: str, function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        from kubernetes.client.exceptions import ApiException
        from urllib3.exceptions import HTTPError

        try:
            return function(*args, **kwargs)
        except ApiException as error:
            if error.status == 404:
                raise NotFound(
                    f"{self.where} does not exist: check --isvc and --namespace "
                    f"(kubectl get isvc -n {self.namespace})"
                ) from error
            if error.status == 409:
                raise StaleRead(
                    f"{self.where} changed since it was read (409 Conflict): read it again and re-decide"
                ) from error
            if error.status in (401, 403):
                raise ConfigError(
                    f"the Kubernetes API refused to {what} {self.where} ({error.status} {error.reason}): "
                    "run with a service account bound to the twinops-rollout Role"
                ) from error
            detail = _api_message(error)
            raise ConfigError(f"the Kubernetes API refused to {what} {self.where}: {detail}") from error
        except HTTPError as error:
            raise ServiceUnavailable(
                f"the Kubernetes API is unreachable ({type(error).__name__}): check the kubeconfig "
                "context or run in the cluster"
            ) from error

    def get(self) -> dict[str, Any]:
        obj = self._call(
            "read", self.api.get_namespaced_custom_object, GROUP, VERSION, self.namespace, PLURAL, self.name
        )
        self.last_read = obj
        self.resource_version = (obj.get("metadata") or {}).get("resourceVersion")
        return obj

    def lease(self) -> KubeLease:
        """The Lease that makes this controller the rollout's one driver."""
        if self.coordination is None:
            raise ConfigError(f"no coordination.k8s.io client to take the rollout lease of {self.where}")
        return KubeLease(
            self.name, self.namespace, api=self.coordination, holder=self.lease_holder, clock=self.clock
        )

    def reconcile(self, state: RolloutState) -> None:
        """Nothing to do: each decision's patch carries the traffic and the state together."""

    def load(self) -> RolloutState | None:
        text = _annotations(self.get()).get(STATE_ANNOTATION)
        return RolloutState.model_validate_json(text) if text else None

    def stable_url(self) -> str:
        obj = self.last_read or self.get()
        status = obj.get("status") or {}
        predictor = (status.get("components") or {}).get("predictor") or {}
        address = (predictor.get("address") or {}).get("url") or (status.get("address") or {}).get("url")
        url = address or predictor.get("url") or status.get("url")
        return url or f"http://{self.name}-predictor.{self.namespace}.svc.cluster.local"

    def canary(self, state: RolloutState) -> CanaryEndpoint:
        """The canary's own URL (not the split one) and its pods' name for Prometheus."""
        obj = self.last_read or self.get()
        predictor = ((obj.get("status") or {}).get("components") or {}).get("predictor") or {}
        if state.mode == "Knative":
            tagged = [t for t in predictor.get("traffic") or [] if t.get("tag") == "latest" and t.get("url")]
            if tagged:
                url = tagged[0]["url"]
            else:  # Knative names tagged URLs <tag>-<host>
                base = predictor.get("url") or f"http://{self.name}-predictor.{self.namespace}"
                scheme, _, host = base.partition("://")
                url = f"{scheme}://latest-{host}"
            workload = predictor.get("latestCreatedRevision") or f"{self.name}-predictor"
        else:
            workload = f"{self.name}-{state.canary_name}-predictor"
            url = f"http://{workload}.{self.namespace}.svc.cluster.local"
        model = state.served_model or self.model_name
        return CanaryEndpoint(url=url, model=model, workload=workload, namespace=self.namespace)

    # --- checks --------------------------------------------------------------------------------

    def check_start(self, model_uri: str | None = None) -> tuple[dict[str, Any], Mode]:
        """The resource and its mode, or one line saying why a rollout of ``model_uri`` cannot start."""
        obj = self.get()
        mode = deployment_mode(obj)
        spec = obj.get("spec") or {}
        predictor = spec.get("predictor") or {}
        state_text = _annotations(obj).get(STATE_ANNOTATION)
        last = RolloutState.model_validate_json(state_text) if state_text else None
        if last is not None and not last.finished:
            raise ConfigError(
                f"a rollout is already running on {self.where}: see `twinops rollout status --isvc "
                f"{self.name}`, then promote or roll it back"
            )
        if mode == "Standard" and predictor.get("canaryTrafficPercent") is not None:
            raise ConfigError(
                f"{self.where} runs in Standard mode, where KServe ignores spec.predictor."
                "canaryTrafficPercent: remove it (twinops rolls out with spec.canary[] in this mode)"
            )
        if mode == "Knative" and spec.get("canary"):
            raise ConfigError(
                f"{self.where} runs in Knative (Serverless) mode, where spec.canary[] is not honoured: "
                "remove it (twinops rolls out with canaryTrafficPercent in this mode)"
            )
        if mode == "Standard" and spec.get("canary"):
            names = ", ".join(c.get("predictor", {}).get("name", "?") for c in spec["canary"])
            raise ConfigError(
                f"{self.where} already has a canary ({names}) that twinops did not start: "
                "remove spec.canary or finish it first"
            )
        # 0 is what a twinops rollback leaves: the last rolled-out revision serves everything.
        left_by_rollback = last is not None and last.phase == "rolled_back"
        if mode == "Knative" and predictor.get("canaryTrafficPercent") not in (
            None,
            100,
            *((0,) if left_by_rollback else ()),
        ):
            raise ConfigError(
                f"{self.where} already splits traffic (canaryTrafficPercent "
                f"{predictor['canaryTrafficPercent']}): finish that canary first"
            )
        # The predictor has a model, and one that can take this URI.
        if model_uri is not None:
            with_model_uri(predictor, model_uri, where=self.where)
        if mode == "Standard" and not (predictor.get("model") or {}).get("modelFormat"):
            raise ConfigError(
                f"{self.where} has no spec.predictor.model.modelFormat, which KServe requires on the "
                "spec.canary[] predictor twinops copies from it: set it (e.g. {name: twinops})"
            )
        return obj, mode

    # --- patches -------------------------------------------------------------------------------

    def _patch(self, body: dict[str, Any]) -> dict[str, Any]:
        """One merge patch, based on the last read (``resourceVersion``): 409 means re-read."""
        if self.resource_version is not None:
            body.setdefault("metadata", {})["resourceVersion"] = self.resource_version
        obj = self._call(
            "patch",
            self.api.patch_namespaced_custom_object,
            GROUP,
            VERSION,
            self.namespace,
            PLURAL,
            self.name,
            body,
        )
        self.last_read = obj
        self.resource_version = (obj.get("metadata") or {}).get("resourceVersion")
        return obj

    def _state_annotations(self, state: RolloutState, extra: dict[str, str | None] | None = None) -> dict:
        decision = state.last_decision
        annotations: dict[str, str | None] = {
            STATE_ANNOTATION: state.model_dump_json(),
            DECISION_ANNOTATION: decision.line() if decision else None,
            **(extra or {}),
        }
        return {"metadata": {"annotations": annotations}}

    def begin(self, state: RolloutState, obj: dict[str, Any]) -> RolloutState:
        """Start the canary at ``state.steps[0]``: one patch, the canary and the state together."""
        predictor = (obj.get("spec") or {}).get("predictor") or {}
        state = state.model_copy(update={"previous_predictor": copy.deepcopy(predictor)})
        percent = state.steps[0]
        if state.mode == "Knative":
            updated = with_model_uri(predictor, state.model_uri, where=self.where)
            updated["canaryTrafficPercent"] = percent
            body = self._state_annotations(state, {TAG_ROUTING: "true"})
            body["spec"] = {"predictor": merge_patch(predictor, updated)}
        else:
            state = state.model_copy(update={"canary_name": canary_name_for(state, predictor.get("name"))})
            body = self._state_annotations(state)
            body["spec"] = {"canary": [self._canary_entry(state, percent)]}
        self._patch(body)
        if state.last_decision is not None:
            self._event(state.last_decision)
        return state

    def _canary_entry(self, state: RolloutState, percent: int) -> dict[str, Any]:
        stable = {k: v for k, v in state.previous_predictor.items() if k not in _NOT_ON_CANARY}
        canary = with_model_uri(stable, state.model_uri, where=self.where)
        canary["name"] = state.canary_name
        # The CRD requires both on a canary's model (not on spec.predictor.model).
        canary["model"].setdefault("name", DEFAULT_CONTAINER)
        canary["model"]["modelFormat"] = state.previous_predictor["model"]["modelFormat"]
        return {"predictor": canary, "trafficPercent": percent}

    def _spec_for(self, state: RolloutState, decision: Decision) -> dict[str, Any] | None:
        """The spec part of ``decision``'s patch (None: the decision changes no traffic)."""
        knative = state.mode == "Knative"
        if decision.action == "step_up":
            if knative:
                return {"predictor": {"canaryTrafficPercent": decision.percent}}
            return {"canary": [self._canary_entry(state, decision.percent)]}
        if decision.action == "promote":
            return self._promoted_spec(state)
        if decision.action == "rollback":
            return self._rolled_back_spec(state)
        return None

    def _current_predictor(self) -> dict[str, Any]:
        return ((self.last_read or self.get()).get("spec") or {}).get("predictor") or {}

    def _promoted_spec(self, state: RolloutState) -> dict[str, Any]:
        if state.mode == "Knative":
            return {"predictor": {"canaryTrafficPercent": None}}
        # The pinned version goes into the stable predictor, which keeps its name and scaling.
        promoted = with_model_uri(state.previous_predictor, state.model_uri, where=self.where)
        return {"predictor": merge_patch(self._current_predictor(), promoted), "canary": None}

    def _rolled_back_spec(self, state: RolloutState) -> dict[str, Any]:
        if state.mode == "Knative":
            # The last rolled-out revision keeps all traffic while the restored spec rolls out.
            restored = {**copy.deepcopy(state.previous_predictor), "canaryTrafficPercent": 0}
            return {"predictor": merge_patch(self._current_predictor(), restored)}
        return {"canary": None}

    def apply(self, state: RolloutState, decision: Decision) -> None:
        """One patch for ``decision`` (already the last one in ``state``): traffic and state together."""
        body = self._state_annotations(state)
        spec = self._spec_for(state, decision)
        if spec is not None:
            body["spec"] = spec
        self._patch(body)
        self._event(decision)

    def record(self, state: RolloutState) -> None:
        """Write the state annotations only (a step that changes no traffic)."""
        self._patch(self._state_annotations(state))

    def _event(self, decision: Decision) -> None:
        if not self._events_allowed:
            return
        from kubernetes.client.exceptions import ApiException

        reason = _EVENT_REASONS[decision.action]
        stamp = now().isoformat().replace("+00:00", "Z")
        body = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"generateName": f"{self.name}-rollout-", "namespace": self.namespace},
            "involvedObject": {
                "apiVersion": f"{GROUP}/{VERSION}",
                "kind": KIND,
                "name": self.name,
                "namespace": self.namespace,
            },
            "reason": reason,
            "message": decision.line()[:1024],
            "type": "Warning" if decision.action == "rollback" else "Normal",
            "source": {"component": "twinops-rollout"},
            "firstTimestamp": stamp,
            "lastTimestamp": stamp,
            "count": 1,
        }
        try:
            self.core.create_namespaced_event(self.namespace, body)
        except ApiException as error:
            if error.status not in (401, 403):
                raise
            self._events_allowed = False
            self.on_event(
                f"events are not allowed for this service account ({error.status}): decisions are "
                f"recorded in the {DECISION_ANNOTATION} annotation only"
            )


def _api_message(error: Any) -> str:
    try:
        return json.loads(error.body).get("message", error.reason)
    except (TypeError, ValueError, AttributeError):
        return f"{error.status} {error.reason}"


def kubernetes_apis(kubeconfig: str | None = None, context: str | None = None) -> tuple[Any, Any, Any]:
    """(CustomObjectsApi, CoreV1Api, CoordinationV1Api) from the in-cluster service account, else
    the kubeconfig."""
    from kubernetes import client, config
    from kubernetes.config.config_exception import ConfigException

    # The client reads KUBECONFIG once, at import: read it now, as kubectl does.
    kubeconfig = kubeconfig or os.environ.get("KUBECONFIG")
    try:
        if kubeconfig is None and context is None:
            try:
                config.load_incluster_config()
            except ConfigException:
                config.load_kube_config()
        else:
            config.load_kube_config(config_file=kubeconfig, context=context)
    except (ConfigException, OSError) as error:
        raise ConfigError(
            f"no Kubernetes credentials ({str(error).splitlines()[0][:160]}): run in the cluster, set "
            "KUBECONFIG or pass --kubeconfig"
        ) from error
    return client.CustomObjectsApi(), client.CoreV1Api(), client.CoordinationV1Api()
