"""Every rendered object is valid for the API server it will meet: built-in kinds against the
Kubernetes 1.30 OpenAPI schemas (kubernetes-validate, strict: unknown fields fail, as
`kubectl apply`'s strict field validation does), KServe kinds against KServe's own CRD schemas in
../shared/crds/kserve (unknown fields fail too; the CEL rules of the CRDs are not evaluated)."""

from __future__ import annotations

import copy
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

KUBERNETES_VERSION = "1.30"
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


def _closed(schema: Any) -> Any:
    """The CRD schema with unknown fields refused wherever the API server would prune them."""
    if isinstance(schema, dict):
        schema = {key: _closed(value) for key, value in schema.items()}
        if (
            schema.get("type") == "object"
            and "properties" in schema
            and "additionalProperties" not in schema
            and not schema.get("x-kubernetes-preserve-unknown-fields")
        ):
            schema["additionalProperties"] = False
        return schema
    if isinstance(schema, list):
        return [_closed(item) for item in schema]
    return schema


@cache
def _crd_schemas(folder: Path) -> dict[tuple[str, str], dict]:
    """(apiVersion, kind) -> the version's openAPIV3Schema, from every CRD file in the folder."""
    schemas = {}
    for path in sorted(folder.glob("*.yaml")):
        crd = yaml.safe_load(path.read_text())
        group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
        for version in crd["spec"]["versions"]:
            schema = copy.deepcopy(version["schema"]["openAPIV3Schema"])
            schemas[(f"{group}/{version['name']}", kind)] = _closed(schema)
    return schemas


@cache
def _crd_validator(folder: Path, api_version: str, kind: str):
    from jsonschema import Draft7Validator

    schema = _crd_schemas(folder).get((api_version, kind))
    assert schema is not None, f"no CRD schema for {api_version} {kind}"
    return Draft7Validator(schema)


def test_kserve_kinds_match_the_crds(renders, docs: list[dict]) -> None:
    if not renders.kserve_crds.is_dir():
        pytest.skip(f"KServe CRDs not found at {renders.kserve_crds}: KServe kinds not validated")
    kserve = [doc for doc in docs if doc["apiVersion"].startswith(KSERVE_GROUP)]
    assert {doc["kind"] for doc in kserve} == {"ServingRuntime", "InferenceService"}
    errors = []
    for doc in kserve:
        validator = _crd_validator(renders.kserve_crds, doc["apiVersion"], doc["kind"])
        for error in validator.iter_errors(doc):
            where = "/".join(str(part) for part in error.path)
            errors.append(f"{doc['kind']}/{doc['metadata']['name']}: {where}: {error.message}")
    assert not errors, "\n".join(errors)


def test_the_crd_check_refuses_what_kserve_refuses(renders) -> None:
    """The check bites: a misspelt field and a wrong type in an InferenceService fail."""
    if not renders.kserve_crds.is_dir():
        pytest.skip(f"KServe CRDs not found at {renders.kserve_crds}: KServe kinds not validated")
    isvc = next(doc for doc in renders.kustomize("dev") if doc["kind"] == "InferenceService")
    validator = _crd_validator(renders.kserve_crds, isvc["apiVersion"], "InferenceService")
    misspelt = copy.deepcopy(isvc)
    misspelt["spec"]["predictor"]["minReplica"] = 1
    wrong_type = copy.deepcopy(isvc)
    wrong_type["spec"]["predictor"]["maxReplicas"] = "three"
    for bad in (misspelt, wrong_type):
        assert list(validator.iter_errors(bad))


def test_the_kubernetes_check_refuses_an_unknown_field(renders) -> None:
    pytest.importorskip("kubernetes_validate", reason="kubernetes-validate is not installed (`make install`)")
    deployment = next(doc for doc in renders.kustomize("dev") if doc["kind"] == "Deployment")
    bad = copy.deepcopy(deployment)
    bad["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {}
    assert _validation_error(bad) is not None
