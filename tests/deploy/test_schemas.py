"""Every rendered object is valid for the API server it will meet: built-in kinds against the
Kubernetes 1.30 OpenAPI schemas (kubernetes-validate, strict: unknown fields fail, as
`kubectl apply`'s strict field validation does), KServe kinds against KServe's own CRD schemas in
../shared/crds/kserve as the API server applies them (tests/support/kube_api.py: unknown fields
fail too; the CEL rules of the CRDs are not evaluated)."""

from __future__ import annotations

import copy

import pytest
from tests.support.kube_api import KUBERNETES_VERSION, custom_object_problems

KSERVE_GROUP = "serving.kserve.io"


def _validation_error(doc: dict) -> str | None:
    import kubernetes_validate

    try:
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
    except kubernetes_validate.ValidationError as error:
        where = "/".join(str(part) for part in error.path)
        return f"{doc['kind']}/{doc['metadata']['name']}: {where}: {error.message}"
    return None


def test_built_in_kinds_are_valid(docs: list[dict]) -> None:
    pytest.importorskip("kubernetes_validate", reason="kubernetes-validate is not installed (`make install`)")
    built_in = [doc for doc in docs if not doc["apiVersion"].startswith(KSERVE_GROUP)]
    assert built_in
    errors = [error for doc in built_in if (error := _validation_error(doc))]
    assert not errors, "\n".join(errors)


@pytest.mark.slow
def test_kserve_kinds_match_the_crds(renders, docs: list[dict], overlay: str) -> None:
    if not renders.kserve_crds.is_dir():
        pytest.skip(f"KServe CRDs not found at {renders.kserve_crds}: KServe kinds not validated")
    kserve = [doc for doc in docs if doc["apiVersion"].startswith(KSERVE_GROUP)]
    # prod-lora, and only it, adds the LLMInferenceService of many twins on one base (KServe's vLLM stack).
    many_twins = {"LLMInferenceService"} if overlay == "prod-lora" else set()
    assert {doc["kind"] for doc in kserve} == {"ServingRuntime", "InferenceService", *many_twins}
    errors = [
        f"{doc['kind']}/{doc['metadata']['name']}: {problem}"
        for doc in kserve
        for problem in custom_object_problems(doc)
    ]
    assert not errors, "\n".join(errors)


@pytest.mark.slow
def test_the_crd_check_refuses_what_kserve_refuses(renders) -> None:
    """The check bites: a misspelt field and a wrong type in an InferenceService fail."""
    if not renders.kserve_crds.is_dir():
        pytest.skip(f"KServe CRDs not found at {renders.kserve_crds}: KServe kinds not validated")
    isvc = next(doc for doc in renders.kustomize("dev") if doc["kind"] == "InferenceService")
    assert custom_object_problems(isvc) == []
    misspelt = copy.deepcopy(isvc)
    misspelt["spec"]["predictor"]["minReplica"] = 1
    wrong_type = copy.deepcopy(isvc)
    wrong_type["spec"]["predictor"]["maxReplicas"] = "three"
    for bad in (misspelt, wrong_type):
        assert custom_object_problems(bad)


def test_the_kubernetes_check_refuses_an_unknown_field(renders) -> None:
    pytest.importorskip("kubernetes_validate", reason="kubernetes-validate is not installed (`make install`)")
    deployment = next(doc for doc in renders.kustomize("dev") if doc["kind"] == "Deployment")
    bad = copy.deepcopy(deployment)
    bad["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {}
    assert _validation_error(bad) is not None
