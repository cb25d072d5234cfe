"""The API emulator refuses what a real API server refuses, through the official client: KServe's
CRD schema (required fields, unknown fields, types), stale resourceVersions, existing names, verbs
the shipped Role lacks, and status written through the main resource."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime

import pytest
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException
from tests.support.kube_api import (
    ApiError,
    KubeApi,
    KubeClients,
    ServiceAccount,
    kube_clients_for,
    namespace_of,
    render,
    running_kube_api,
    write_kubeconfig,
)

GROUP, VERSION, PLURAL = "serving.kserve.io", "v1beta1", "inferenceservices"
NAME = "twin-llm"
NAMESPACE = namespace_of("dev")
MODIFIED = "the object has been modified; please apply your changes to the latest version and try again"


@pytest.fixture
def twin_llm(kube_api: KubeApi) -> dict:
    """The dev overlay's InferenceServices stored; returns twin-llm as stored."""
    kube_api.load_rendered(render("dev"))
    return kube_api.get("InferenceService", NAMESPACE, NAME)


def _patch(clients: KubeClients, body: dict, name: str = NAME) -> dict:
    return clients.custom.patch_namespaced_custom_object(GROUP, VERSION, NAMESPACE, PLURAL, name, body)


def _refusal(call, *args) -> tuple[int, dict]:
    with pytest.raises(ApiException) as caught:
        call(*args)
    return caught.value.status, json.loads(caught.value.body)


def _canary(stable_predictor: dict, percent: int, *, model_name: str | None) -> dict:
    """A Standard-mode canary entry: the stable predictor, named, without its autoscaling."""
    predictor = {k: v for k, v in stable_predictor.items() if k not in ("minReplicas", "maxReplicas")}
    predictor = {**copy.deepcopy(predictor), "name": "canary"}
    predictor["model"]["args"] = ["--model_uri=models:/twin-llm/2"]
    if model_name is not None:
        predictor["model"]["name"] = model_name
    return {"spec": {"canary": [{"predictor": predictor, "trafficPercent": percent}]}}


def test_a_canary_model_without_a_name_is_invalid_and_changes_nothing(
    kube_api, kube_clients, twin_llm
) -> None:
    patch = _canary(twin_llm["spec"]["predictor"], 10, model_name=None)
    status, body = _refusal(_patch, kube_clients, patch)
    assert status == 422
    assert body["reason"] == "Invalid"
    assert body["message"] == (
        'InferenceService.serving.kserve.io "twin-llm" is invalid: '
        "spec.canary[0].predictor.model.name: Required value"
    )
    assert body["details"]["causes"] == [
        {
            "reason": "FieldValueRequired",
            "message": "Required value",
            "field": "spec.canary[0].predictor.model.name",
        }
    ]
    assert kube_api.get("InferenceService", NAMESPACE, NAME) == twin_llm
    assert [request.status for request in kube_api.writes()] == [422]


def test_a_valid_standard_canary_is_stored_with_a_new_version_and_generation(
    kube_api, kube_clients, twin_llm
) -> None:
    patch = _canary(twin_llm["spec"]["predictor"], 10, model_name="kserve-container")
    answered = _patch(kube_clients, patch)
    stored = kube_api.get("InferenceService", NAMESPACE, NAME)
    assert answered == stored
    assert stored["spec"]["canary"][0]["trafficPercent"] == 10
    assert stored["spec"]["canary"][0]["predictor"]["model"]["args"] == ["--model_uri=models:/twin-llm/2"]
    assert int(stored["metadata"]["resourceVersion"]) > int(twin_llm["metadata"]["resourceVersion"])
    assert stored["metadata"]["generation"] == twin_llm["metadata"]["generation"] + 1
    assert kube_api.writes()[-1].content_type == "application/merge-patch+json"


def test_metadata_changes_keep_the_generation(kube_api, kube_clients, twin_llm) -> None:
    answered = _patch(kube_clients, {"metadata": {"annotations": {"rollout.twinops.io/state": "{}"}}})
    assert answered["metadata"]["generation"] == twin_llm["metadata"]["generation"]
    assert answered["metadata"]["resourceVersion"] != twin_llm["metadata"]["resourceVersion"]


def test_an_unknown_field_is_refused(kube_api, kube_clients, twin_llm) -> None:
    status, body = _refusal(_patch, kube_clients, {"spec": {"predictor": {"canaryTrafficPercnt": 10}}})
    # fieldValidation=Strict's answer (see the module docstring for the server's Warn default)
    assert (status, body["reason"]) == (400, "BadRequest")
    assert body["message"].endswith(
        'strict decoding error: unknown field "spec.predictor.canaryTrafficPercnt"'
    )
    assert kube_api.get("InferenceService", NAMESPACE, NAME) == twin_llm


def test_under_warn_an_unknown_field_is_dropped_as_the_server_default_does() -> None:
    with running_kube_api(default_field_validation="Warn") as api:
        api.load_rendered(render("dev"))
        clients = kube_clients_for(api.url)
        answered = _patch(clients, {"spec": {"predictor": {"canaryTrafficPercnt": 10, "minReplicas": 2}}})
        clients.close()
    assert answered["spec"]["predictor"]["minReplicas"] == 2
    assert "canaryTrafficPercnt" not in answered["spec"]["predictor"]


def test_wrong_types_and_values_are_invalid(kube_api, kube_clients, twin_llm) -> None:
    status, body = _refusal(_patch, kube_clients, {"spec": {"predictor": {"maxReplicas": "three"}}})
    assert status == 422
    assert body["details"]["causes"][0]["field"] == "spec.predictor.maxReplicas"
    assert 'must be of type integer: "string"' in body["message"]
    status, body = _refusal(
        _patch, kube_clients, {"metadata": {"labels": {"twinops.io/model": "models:/twin-llm/2"}}}
    )
    assert status == 422
    assert body["details"]["causes"][0]["field"] == "metadata.labels"


def test_a_stale_resource_version_is_a_conflict(kube_api, kube_clients, twin_llm) -> None:
    stale = twin_llm["metadata"]["resourceVersion"]
    _patch(kube_clients, {"metadata": {"annotations": {"rollout.twinops.io/state": "{}"}}})
    status, body = _refusal(
        _patch, kube_clients, {"metadata": {"resourceVersion": stale, "labels": {"a": "b"}}}
    )
    assert (status, body["reason"]) == (409, "Conflict")
    assert (
        body["message"]
        == f'Operation cannot be fulfilled on inferenceservices.serving.kserve.io "twin-llm": {MODIFIED}'
    )
    replace = kube_clients.custom.replace_namespaced_custom_object
    status, _ = _refusal(replace, GROUP, VERSION, NAMESPACE, PLURAL, NAME, twin_llm)
    assert status == 409
    current = kube_api.get("InferenceService", NAMESPACE, NAME)
    assert "a" not in current["metadata"].get("labels", {})
    # the latest version replaces; a replace without one is refused
    current["metadata"]["labels"]["a"] = "b"
    assert replace(GROUP, VERSION, NAMESPACE, PLURAL, NAME, current)["metadata"]["labels"]["a"] == "b"
    del current["metadata"]["resourceVersion"]
    status, body = _refusal(replace, GROUP, VERSION, NAMESPACE, PLURAL, NAME, current)
    assert (status, body["details"]["causes"][0]["field"]) == (422, "metadata.resourceVersion")


def test_a_json_patch_applies_and_its_test_guards(kube_api, twin_llm) -> None:
    path = f"/apis/{GROUP}/{VERSION}/namespaces/{NAMESPACE}/{PLURAL}/{NAME}"
    rv = twin_llm["metadata"]["resourceVersion"]
    operations = [
        {"op": "test", "path": "/metadata/resourceVersion", "value": rv},
        {"op": "replace", "path": "/spec/predictor/maxReplicas", "value": 3},
    ]
    code, answer, _ = kube_api.handle("PATCH", path, {}, "application/json-patch+json", operations)
    assert (code, answer["spec"]["predictor"]["maxReplicas"]) == (200, 3)
    code, _, _ = kube_api.handle("PATCH", path, {}, "application/json-patch+json", operations)
    assert code == 422  # the test operation failed: the version moved on
    code, answer, _ = kube_api.handle("PATCH", path, {}, "application/strategic-merge-patch+json", {})
    assert (code, answer["reason"]) == (415, "UnsupportedMediaType")


def test_status_written_through_the_main_resource_is_ignored(kube_api, kube_clients, twin_llm) -> None:
    kube_api.set_status(
        "InferenceService", NAMESPACE, NAME, {"url": "http://twin-llm.twinops-dev.example.com"}
    )
    before = kube_api.get("InferenceService", NAMESPACE, NAME)
    answered = _patch(kube_clients, {"status": {"url": "http://elsewhere.example.com"}})
    assert answered["status"] == {"url": "http://twin-llm.twinops-dev.example.com"}
    assert kube_api.get("InferenceService", NAMESPACE, NAME) == before  # nothing written
    patch_status = kube_clients.custom.patch_namespaced_custom_object_status
    answered = patch_status(
        GROUP, VERSION, NAMESPACE, PLURAL, NAME, {"status": {"url": "http://new.example.com"}}
    )
    assert answered["status"]["url"] == "http://new.example.com"
    assert answered["metadata"]["generation"] == before["metadata"]["generation"]


def test_creating_an_existing_lease_is_a_conflict(kube_api, kube_clients) -> None:
    lease = client.V1Lease(
        metadata=client.V1ObjectMeta(name="twin-llm-rollout"),
        spec=client.V1LeaseSpec(holder_identity="controller-a", lease_duration_seconds=30),
    )
    created = kube_clients.coordination.create_namespaced_lease(NAMESPACE, lease)
    assert created.metadata.resource_version and created.metadata.uid
    status, body = _refusal(kube_clients.coordination.create_namespaced_lease, NAMESPACE, lease)
    assert (status, body["reason"]) == (409, "AlreadyExists")
    assert body["message"] == 'leases.coordination.k8s.io "twin-llm-rollout" already exists'
    # a takeover written from a stale read loses
    stale = copy.deepcopy(created)
    created.spec.holder_identity = "controller-b"
    kube_clients.coordination.replace_namespaced_lease("twin-llm-rollout", NAMESPACE, created)
    stale.spec.holder_identity = "controller-c"
    status, _ = _refusal(
        kube_clients.coordination.replace_namespaced_lease, "twin-llm-rollout", NAMESPACE, stale
    )
    assert status == 409
    assert kube_api.get("Lease", NAMESPACE, "twin-llm-rollout")["spec"]["holderIdentity"] == "controller-b"


def test_leases_and_events_are_checked_against_the_kubernetes_schemas(kube_api, kube_clients) -> None:
    bad_lease = {"metadata": {"name": "x"}, "spec": {"holderIdentity": "a", "leaseDurationSecs": 30}}
    status, body = _refusal(kube_clients.coordination.create_namespaced_lease, NAMESPACE, bad_lease)
    assert status == 400 and 'unknown field "spec.leaseDurationSecs"' in body["message"]
    event = client.CoreV1Event(
        metadata=client.V1ObjectMeta(generate_name="twin-llm."),
        involved_object=client.V1ObjectReference(kind="InferenceService", name=NAME),
        reason="CanaryStep",
        message="10%",
        type="Normal",
    )
    status, body = _refusal(kube_clients.core.create_namespaced_event, NAMESPACE, event)
    assert (status, body["details"]["causes"][0]["field"]) == (422, "involvedObject.namespace")
    event.involved_object.namespace = NAMESPACE
    created = kube_clients.core.create_namespaced_event(NAMESPACE, event)
    assert created.metadata.name.startswith("twin-llm.")
    assert [e["reason"] for e in kube_api.objects("Event", NAMESPACE)] == ["CanaryStep"]


def test_the_rollout_service_account_may_get_and_patch_but_not_delete(
    kube_api, kube_clients, twin_llm
) -> None:
    docs = render("dev")
    deployment = next(
        d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"] == "twinops-rollout"
    )
    account = deployment["spec"]["template"]["spec"]["serviceAccountName"]
    kube_api.identity = ServiceAccount.from_rendered(docs, NAMESPACE, account)
    kube_clients.custom.get_namespaced_custom_object(GROUP, VERSION, NAMESPACE, PLURAL, NAME)
    _patch(kube_clients, {"metadata": {"annotations": {"rollout.twinops.io/state": "{}"}}})
    delete = kube_clients.custom.delete_namespaced_custom_object
    status, body = _refusal(delete, GROUP, VERSION, NAMESPACE, PLURAL, NAME)
    assert (status, body["reason"]) == (403, "Forbidden")
    assert body["message"] == (
        f'inferenceservices.serving.kserve.io "twin-llm" is forbidden: User '
        f'"system:serviceaccount:{NAMESPACE}:{account}" cannot delete resource "inferenceservices" in '
        f'API group "serving.kserve.io" in the namespace "{NAMESPACE}"'
    )
    assert kube_api.get("InferenceService", NAMESPACE, NAME) is not None
    # another namespace is out of the Role's reach
    status, _ = _refusal(
        kube_clients.custom.get_namespaced_custom_object, GROUP, VERSION, "other", PLURAL, NAME
    )
    assert status == 403


def test_an_invalid_seed_raises_naming_the_problem(kube_api, twin_llm) -> None:
    seed = copy.deepcopy(twin_llm)
    seed["metadata"] = {"name": "twin-llm-2", "namespace": NAMESPACE}
    del seed["spec"]["predictor"]["model"]["modelFormat"]["name"]
    with pytest.raises(ApiError, match=r"spec\.predictor\.model\.modelFormat\.name: Required value"):
        kube_api.add(seed)
    assert kube_api.get("InferenceService", NAMESPACE, "twin-llm-2") is None


def test_unknown_paths_answer_not_found_in_the_status_shape(kube_api) -> None:
    code, answer, _ = kube_api.handle(
        "GET", "/apis/serving.kserve.io/v1beta1/namespaces/x/nothings/y", {}, "", None
    )
    assert (code, answer["kind"], answer["reason"]) == (404, "Status", "NotFound")
    code, answer, _ = kube_api.handle(
        "GET", f"/apis/{GROUP}/{VERSION}/namespaces/x/{PLURAL}/missing", {}, "", None
    )
    assert (code, answer["message"]) == (404, 'inferenceservices.serving.kserve.io "missing" not found')


def test_a_kubeconfig_reaches_the_emulator(kube_api, twin_llm, tmp_path) -> None:
    path = write_kubeconfig(tmp_path / "kubeconfig", kube_api.url, namespace=NAMESPACE)
    api_client = config.new_client_from_config(config_file=str(path))
    found = client.CustomObjectsApi(api_client).list_namespaced_custom_object(
        GROUP, VERSION, NAMESPACE, PLURAL
    )
    api_client.close()
    assert sorted(item["metadata"]["name"] for item in found["items"]) == ["twin-llm", "twin-rag"]


@pytest.mark.parametrize("renderer", ["kustomize", "helm"])
@pytest.mark.parametrize("overlay", ["dev", "prod"])
def test_the_shipped_inference_services_are_valid(overlay: str, renderer: str) -> None:
    docs = render(overlay, renderer)
    api = KubeApi()
    stored = api.load_rendered(docs, namespace=namespace_of(overlay))
    assert {obj["metadata"]["name"] for obj in stored} >= {"twin-llm", "twin-rag"}


def test_a_custom_resource_is_one_object_in_every_served_version(kube_api, kube_clients) -> None:
    """LLMInferenceService serves v1alpha1 and v1alpha2 (stored): one object, read and patched in either."""
    created = kube_clients.custom.create_namespaced_custom_object(
        GROUP,
        "v1alpha2",
        NAMESPACE,
        "llminferenceservices",
        {
            "apiVersion": f"{GROUP}/v1alpha2",
            "kind": "LLMInferenceService",
            "metadata": {"name": "twin"},
            "spec": {"model": {"uri": "hf://HuggingFaceTB/SmolLM2-135M-Instruct"}},
            "status": {"url": "http://ignored.example.com"},
        },
    )
    assert "status" not in created  # a create drops what the status subresource owns
    patched = kube_clients.custom.patch_namespaced_custom_object(
        GROUP, "v1alpha1", NAMESPACE, "llminferenceservices", "twin", {"spec": {"replicas": 2}}
    )
    assert patched["apiVersion"] == f"{GROUP}/v1alpha1"
    stored = kube_api.get("LLMInferenceService", NAMESPACE, "twin")
    assert (stored["apiVersion"], stored["spec"]["replicas"]) == (f"{GROUP}/v1alpha2", 2)
    assert stored["metadata"]["generation"] == 2


def test_a_lease_time_without_microseconds_is_refused_as_the_decoder_does(kube_api, kube_clients) -> None:
    """MicroTime takes six fractional digits; the client's isoformat() writes none at microsecond 0."""
    on_the_second = datetime(2026, 12, 7, 3, 0, 0, tzinfo=UTC)
    lease = client.V1Lease(
        metadata=client.V1ObjectMeta(name="twin-llm-rollout"),
        spec=client.V1LeaseSpec(holder_identity="a", lease_duration_seconds=30, renew_time=on_the_second),
    )
    status, body = _refusal(kube_clients.coordination.create_namespaced_lease, NAMESPACE, lease)
    assert status == 400
    assert 'parsing time "2026-12-07T03:00:00+00:00" as "2006-01-02T15:04:05.000000Z07:00"' in body["message"]
    lease.spec.renew_time = "2026-12-07T03:00:00.000000Z"
    created = kube_clients.coordination.create_namespaced_lease(NAMESPACE, lease)
    assert created.spec.renew_time == on_the_second
