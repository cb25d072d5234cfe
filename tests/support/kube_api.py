"""A Kubernetes API server in the test process that refuses what a real one refuses.

No API server runs on this machine. ``KubeApi`` answers the official ``kubernetes`` client (and
``kubectl``-free CLI subprocesses, through ``write_kubeconfig``) over HTTP on 127.0.0.1 the way the
API server does for what twinops' controllers call:

- **Resources**: namespaced custom objects of every CustomResourceDefinition in ``../shared/crds``
  (InferenceService, LLMInferenceService, TrainJob, ...; every served version, stored once per
  group and plural as with conversion strategy ``None``), ``coordination.k8s.io/v1`` Leases and
  ``core/v1`` Events. GET (item and collection, with equality label selectors), POST, PUT, PATCH
  and DELETE (finalizers and delete preconditions honoured). ``?dryRun=All`` checks and stores nothing.
- **Patches**: ``application/merge-patch+json`` (RFC 7386) and ``application/json-patch+json``
  (RFC 6902, a body that is not a list of operations is a 400, as the server's decoder says).
  Strategic merge is refused with 415 on custom resources, as the real server does, and applied
  as a merge patch on Leases and Events (no list merge keys matter there). Server-side apply is
  not emulated (415, saying so).
- **Validation** of every object it would store, after the patch is applied: custom resources
  against the CRD's ``openAPIV3Schema`` of the request's version (structural schema rules: nulls of
  non-nullable fields dropped, ``default`` values applied, then ``required``, types including
  ``x-kubernetes-int-or-string`` and ``nullable``, ``enum``, ``pattern``, lengths, bounds, item
  counts, list-map keys unique); ``metadata`` as ObjectMeta (known fields only, string maps, name
  and label/annotation key syntax, label values). Leases and Events against the Kubernetes 1.30
  OpenAPI schemas (``kubernetes-validate``, strict), plus the server's own rules the schema does
  not carry (a Lease's duration is positive; an Event names its object's namespace; times in the
  layout the decoder reads: MicroTime with exactly six fractional digits, a 400 otherwise).
  A refused object answers 422 ``Invalid`` with the real message (``InferenceService.serving.kserve.io
  "twin-llm" is invalid: spec.canary[0].predictor.model.name: Required value``) and its causes.
- **Unknown fields** answer 400 ``BadRequest`` ``strict decoding error: unknown field "spec.x"``,
  the real server's answer under ``fieldValidation=Strict`` (kubectl's default). The server's own
  default, when a client sends no ``fieldValidation`` (the python client never does), is ``Warn``:
  the field is silently dropped and the request succeeds. A dropped field is a bug a test should
  see, so the emulator treats a missing parameter as ``Strict`` (``KubeApi(default_field_validation=
  "Warn")`` restores the server's default); ``Ignore`` and ``Warn`` prune custom resources' unknown
  fields (``Warn`` with a ``Warning`` header).
- **resourceVersion**: one counter across the server, bumped by every stored write (a write that
  changes nothing stores nothing, as on a real server); a PUT or PATCH carrying a different
  ``metadata.resourceVersion`` is a 409 ``Conflict``; a PUT of a custom object without one is a 422;
  a create of an existing name is a 409 ``AlreadyExists``. ``uid`` and ``creationTimestamp`` are
  set on create, ``generateName`` honoured, ``metadata.generation`` bumped when anything but
  metadata (and status) changes.
- **Status subresource** (CRDs that declare it): writes to the main resource keep the stored
  status (and a create drops it); ``/status`` writes change only the status. ``KubeApi.set_status``
  is the controller's (KServe's) side for tests; ``KubeApi.add`` seeds an object with its status.
- **RBAC**: with ``identity`` set (a ``ServiceAccount`` and the PolicyRules bound to it, e.g. from
  ``rules_for_service_account`` over a render), every request whose verb on the group, resource
  (``inferenceservices/status`` for the subresource) and name the rules do not allow answers 403
  ``Forbidden`` with the real message. The rules apply in the identity's namespace only (a
  ClusterRoleBinding's reach elsewhere is not modelled). Without an identity everything is allowed.

Not emulated: admission webhooks (KServe's validating webhook, so its cross-field rules are not
checked), CEL rules (``x-kubernetes-validations``), watches (405), cluster-scoped resources,
``deletecollection``, ``managedFields``, discovery, and conversion webhooks. Every request is in
``KubeApi.requests`` (method, path, query, content type, body, status answered).

Use: the ``kube_api`` and ``kube_clients`` fixtures (import them into a conftest: ``from
tests.support.kube_api import kube_api, kube_clients  # noqa: F401``), or ``running_kube_api(...)``
and ``kube_clients_for(url)``; ``write_kubeconfig`` for CLI subprocesses. Seed with ``add`` or
``load_rendered(render("dev"))`` (``render``: an overlay as kubectl kustomize or helm template
renders it, once per session); read with ``get``/``objects``, ``requests``/``writes``; restrict
with ``identity = ServiceAccount.from_rendered(docs, namespace, name)``. ``custom_object_problems``
checks a rendered custom object without a server (tests/deploy/test_schemas.py).
"""

from __future__ import annotations

import copy
import json
import random
import re
import threading
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cache
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, NamedTuple
from urllib.parse import parse_qs, urlparse

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
# The CRDs beside the project (never copied into it).
CRDS_DIR = ROOT.parent / "shared" / "crds"
# The API server version the manifests target (the built-in kinds' schemas).
KUBERNETES_VERSION = "1.30"

Doc = dict[str, Any]

# --- resource types ----------------------------------------------------------------------------


@dataclass(frozen=True)
class ResourceType:
    """One served group/version/resource. ``schema`` is the CRD's (None: a built-in kind)."""

    group: str
    version: str
    plural: str
    kind: str
    schema: Doc | None = field(default=None, repr=False, compare=False)
    status_subresource: bool = False
    stored_version: bool = True  # the one tests reach by kind or plural

    @property
    def custom(self) -> bool:
        return self.schema is not None

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def group_resource(self) -> str:
        """As messages name it: ``inferenceservices.serving.kserve.io``, ``events``."""
        return f"{self.plural}.{self.group}" if self.group else self.plural

    @property
    def group_kind(self) -> str:
        """As ``Invalid`` messages name it: ``InferenceService.serving.kserve.io``, ``Event``."""
        return f"{self.kind}.{self.group}" if self.group else self.kind


BUILT_IN = (
    ResourceType("coordination.k8s.io", "v1", "leases", "Lease"),
    ResourceType("", "v1", "events", "Event"),
)


@cache
def custom_resource_types(folder: Path = CRDS_DIR) -> tuple[ResourceType, ...]:
    """Every served version of every namespaced CRD under ``folder`` (read once per session)."""
    types = []
    for path in sorted(folder.rglob("*.yaml")):
        with path.open(encoding="utf-8") as handle:
            crd = yaml.load(handle, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
        if crd.get("kind") != "CustomResourceDefinition" or crd["spec"]["scope"] != "Namespaced":
            continue
        spec = crd["spec"]
        for version in spec["versions"]:
            if not version.get("served", True):
                continue
            schema = version["schema"]["openAPIV3Schema"]
            # The root's metadata is ObjectMeta whatever the CRD says (it says `type: object`).
            schema = {**schema, "properties": {**schema.get("properties", {}), "metadata": OBJECT_META}}
            types.append(
                ResourceType(
                    spec["group"],
                    version["name"],
                    spec["names"]["plural"],
                    spec["names"]["kind"],
                    schema,
                    "status" in (version.get("subresources") or {}),
                    bool(version.get("storage")),
                )
            )
    return tuple(types)


# --- errors in the API's Status shape ----------------------------------------------------------


class ApiError(Exception):
    """A refusal, as the API server words it (``str()`` is its message)."""

    def __init__(self, code: int, reason: str, message: str, details: Doc | None = None) -> None:
        super().__init__(message)
        self.code, self.reason, self.message, self.details = code, reason, message, details

    def status(self) -> Doc:
        body = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        }
        if self.details is not None:
            body["details"] = self.details
        return body


def _details(rt: ResourceType, name: str | None) -> Doc:
    return (
        {"name": name, "group": rt.group, "kind": rt.plural}
        if name
        else {"group": rt.group, "kind": rt.plural}
    )


def _not_found(rt: ResourceType, name: str) -> ApiError:
    return ApiError(404, "NotFound", f'{rt.group_resource} "{name}" not found', _details(rt, name))


def _conflict(rt: ResourceType, name: str, why: str) -> ApiError:
    message = f'Operation cannot be fulfilled on {rt.group_resource} "{name}": {why}'
    return ApiError(409, "Conflict", message, _details(rt, name))


MODIFIED = "the object has been modified; please apply your changes to the latest version and try again"


def _bad_request(message: str) -> ApiError:
    return ApiError(400, "BadRequest", message)


def _undecodable(rt: ResourceType, problem: str) -> ApiError:
    return _bad_request(f'{rt.kind} in version "{rt.version}" cannot be handled as a {rt.kind}: {problem}')


def _not_an_object(body: Any) -> ApiError:
    return _bad_request(
        f"json: cannot unmarshal {_type_name(body)} into Go value of type map[string]interface {{}}"
    )


@dataclass(frozen=True)
class Cause:
    """One field error, as the API server lists it in an ``Invalid`` Status."""

    field: str
    reason: str  # FieldValueRequired, FieldValueInvalid, FieldValueNotSupported, ...
    detail: str  # "Required value", 'Invalid value: "x": ...'

    def line(self) -> str:
        return f"{self.field}: {self.detail}"


def _invalid(rt: ResourceType, name: str, causes: list[Cause]) -> ApiError:
    lines = [cause.line() for cause in causes]
    listed = lines[0] if len(lines) == 1 else "[" + ", ".join(lines) + "]"
    details = {
        "name": name,
        "group": rt.group,
        "kind": rt.kind,
        "causes": [{"reason": c.reason, "message": c.detail, "field": c.field} for c in causes],
    }
    return ApiError(422, "Invalid", f'{rt.group_kind} "{name}" is invalid: {listed}', details)


# --- structural schema: normalization and validation -------------------------------------------

_STRING: Doc = {"type": "string"}
_STRING_MAP: Doc = {"type": "object", "additionalProperties": _STRING}
OBJECT_META: Doc = {
    "type": "object",
    "properties": {
        **dict.fromkeys(("name", "generateName", "namespace", "selfLink", "uid", "resourceVersion"), _STRING),
        **{key: {"type": "string", "nullable": True} for key in ("creationTimestamp", "deletionTimestamp")},
        **{key: {"type": "integer"} for key in ("generation", "deletionGracePeriodSeconds")},
        "labels": _STRING_MAP,
        "annotations": _STRING_MAP,
        "finalizers": {"type": "array", "items": _STRING},
        "ownerReferences": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["apiVersion", "kind", "name", "uid"],
                "properties": {
                    **dict.fromkeys(("apiVersion", "kind", "name", "uid"), _STRING),
                    **{key: {"type": "boolean"} for key in ("controller", "blockOwnerDeletion")},
                },
            },
        },
        "managedFields": {
            "type": "array",
            "items": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
        },
    },
}


def _child(path: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else key


def _open(schema: Doc) -> bool:
    """Whether the object keeps fields its schema does not name."""
    return (
        bool(schema.get("x-kubernetes-preserve-unknown-fields")) or schema.get("additionalProperties") is True
    )


def normalize(value: Any, schema: Doc, path: str = "", *, prune: bool = False) -> list[str]:
    """What the API server does to an object before validating it, in place: drop null fields that
    are not ``nullable``, apply ``default`` values; return the paths of unknown fields (removed
    when ``prune``)."""
    unknown: list[str] = []
    if isinstance(value, dict):
        properties = schema.get("properties", {})
        extra = schema.get("additionalProperties")
        for key in list(value):
            child_schema = properties.get(key, extra if isinstance(extra, dict) else None)
            if child_schema is None and not (
                _open(schema) or (schema.get("x-kubernetes-embedded-resource") and key in _TYPE_META)
            ):
                unknown.append(_child(path, key))
                if prune:
                    del value[key]
            elif value[key] is None and child_schema is not None and not child_schema.get("nullable"):
                del value[key]
            elif child_schema is not None:
                unknown += normalize(value[key], child_schema, _child(path, key), prune=prune)
        for key, child_schema in properties.items():
            if key not in value and "default" in child_schema:
                value[key] = copy.deepcopy(child_schema["default"])
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for index, item in enumerate(value):
            unknown += normalize(item, schema["items"], _child(path, index), prune=prune)
    return unknown


_TYPE_META = ("apiVersion", "kind", "metadata")


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int) or (isinstance(value, float) and value.is_integer()):
        return "integer"
    return {float: "number", str: "string", list: "array", dict: "object"}[type(value)]


def _type_ok(value: Any, schema: Doc) -> bool:
    actual = _type_name(value)
    if value is None:
        return bool(schema.get("nullable"))
    if schema.get("x-kubernetes-int-or-string"):
        return actual in ("integer", "string")
    expected = schema.get("type")
    return expected is None or actual == expected or (expected == "number" and actual == "integer")


def _invalid_value(path: str, value: Any, message: str) -> Cause:
    return Cause(path, "FieldValueInvalid", f"Invalid value: {json.dumps(value)}: {path} in body {message}")


def validate(value: Any, schema: Doc, path: str = "") -> list[Cause]:
    """Every rule of a structural schema that ``value`` (normalized) breaks."""
    if not _type_ok(value, schema):
        expected = "integer-or-string" if schema.get("x-kubernetes-int-or-string") else schema.get("type")
        actual = _type_name(value)
        return [_invalid_value(path, actual, f"must be of type {expected}: {json.dumps(actual)}")]
    if value is None:
        return []
    causes: list[Cause] = []
    if "enum" in schema and not any(
        value == allowed and type(value) is type(allowed) for allowed in schema["enum"]
    ):
        supported = ", ".join(json.dumps(allowed) for allowed in schema["enum"])
        causes.append(
            Cause(
                path,
                "FieldValueNotSupported",
                f"Unsupported value: {json.dumps(value)}: supported values: {supported}",
            )
        )
    if isinstance(value, str):
        causes += _string_causes(value, schema, path)
    elif isinstance(value, int | float) and not isinstance(value, bool):
        if "maximum" in schema and value > schema["maximum"]:
            causes.append(_invalid_value(path, value, f"should be less than or equal to {schema['maximum']}"))
        if "minimum" in schema and value < schema["minimum"]:
            causes.append(
                _invalid_value(path, value, f"should be greater than or equal to {schema['minimum']}")
            )
    elif isinstance(value, list):
        causes += _list_causes(value, schema, path)
    elif isinstance(value, dict):
        causes += _object_causes(value, schema, path)
    return causes


def _string_causes(value: str, schema: Doc, path: str) -> list[Cause]:
    causes = []
    if "maxLength" in schema and len(value) > schema["maxLength"]:
        causes.append(
            Cause(path, "FieldValueTooLong", f"Too long: may not be more than {schema['maxLength']} bytes")
        )
    if "minLength" in schema and len(value) < schema["minLength"]:
        causes.append(_invalid_value(path, value, f"should be at least {schema['minLength']} chars long"))
    pattern = _pattern(schema.get("pattern"))
    if pattern is not None and not pattern.search(value):
        causes.append(_invalid_value(path, value, f"should match '{schema['pattern']}'"))
    return causes


@cache
def _pattern(text: str | None) -> re.Pattern | None:
    """The schema's pattern (Go RE2 syntax; the few Python cannot read are not checked)."""
    try:
        return re.compile(text) if text else None
    except re.error:
        return None


def _list_causes(value: list, schema: Doc, path: str) -> list[Cause]:
    causes = []
    if "maxItems" in schema and len(value) > schema["maxItems"]:
        causes.append(
            Cause(
                path,
                "FieldValueTooMany",
                f"Too many: {len(value)}: must have at most {schema['maxItems']} items",
            )
        )
    if "minItems" in schema and len(value) < schema["minItems"]:
        causes.append(_invalid_value(path, len(value), f"should have at least {schema['minItems']} items"))
    items = schema.get("items") if isinstance(schema.get("items"), dict) else {}
    for index, item in enumerate(value):
        causes += validate(item, items, _child(path, index))
    list_type = schema.get("x-kubernetes-list-type")
    if list_type in ("map", "set"):
        keys = schema.get("x-kubernetes-list-map-keys", [])
        seen = []
        for index, item in enumerate(value):
            identity = (
                {key: item.get(key) for key in keys}
                if list_type == "map" and isinstance(item, dict)
                else item
            )
            if identity in seen:
                causes.append(
                    Cause(
                        _child(path, index), "FieldValueDuplicate", f"Duplicate value: {json.dumps(identity)}"
                    )
                )
            seen.append(identity)
    return causes


def _object_causes(value: Doc, schema: Doc, path: str) -> list[Cause]:
    causes = [
        Cause(_child(path, name), "FieldValueRequired", "Required value")
        for name in schema.get("required", [])
        if name not in value
    ]
    if "maxProperties" in schema and len(value) > schema["maxProperties"]:
        causes.append(
            Cause(
                path,
                "FieldValueTooMany",
                f"Too many: {len(value)}: must have at most {schema['maxProperties']} items",
            )
        )
    if "minProperties" in schema and len(value) < schema["minProperties"]:
        causes.append(
            _invalid_value(path, len(value), f"should have at least {schema['minProperties']} properties")
        )
    properties, extra = schema.get("properties", {}), schema.get("additionalProperties")
    for key, item in value.items():
        child_schema = properties.get(key, extra if isinstance(extra, dict) else None)
        if child_schema is not None:
            causes += validate(item, child_schema, _child(path, key))
    return causes


def custom_object_problems(doc: Doc, crds: Path = CRDS_DIR) -> list[str]:
    """What the API server would refuse in a custom object, a line each (unknown fields, the CRD
    schema's rules, ObjectMeta's): for checking rendered manifests without a server."""
    wanted = (doc.get("apiVersion"), doc.get("kind"))
    rt = next((t for t in custom_resource_types(crds) if (t.api_version, t.kind) == wanted), None)
    if rt is None:
        return [f"no CRD under {crds} serves {wanted[0]} {wanted[1]}"]
    obj = copy.deepcopy(doc)
    unknown = normalize(obj, rt.schema)
    causes = validate(obj, rt.schema) + metadata_causes(obj.get("metadata") or {})
    return [f'unknown field "{path}"' for path in unknown] + [cause.line() for cause in causes]


# --- ObjectMeta rules the schema does not carry -------------------------------------------------

_DNS_LABEL = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_DNS_SUBDOMAIN = re.compile(rf"{_DNS_LABEL}(\.{_DNS_LABEL})*")
_NAME_PART = re.compile(r"([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]")
_LABEL_VALUE = re.compile(r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?")
_SUBDOMAIN_RULE = (
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', "
    "and must start and end with an alphanumeric character (e.g. 'example.com', regex used for "
    f"validation is '{_DNS_SUBDOMAIN.pattern}')"
)
_NAME_PART_RULE = (
    "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end "
    f"with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for "
    f"validation is '{_NAME_PART.pattern}')"
)
_LABEL_VALUE_RULE = (
    "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', "
    "and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or "
    f"'12345', regex used for validation is '{_LABEL_VALUE.pattern}')"
)
_ANNOTATIONS_LIMIT = 256 * 1024


def _key_problem(key: str) -> str | None:
    prefix, _, name = key.rpartition("/")
    if prefix and (len(prefix) > 253 or not _DNS_SUBDOMAIN.fullmatch(prefix)):
        return f"prefix part {_SUBDOMAIN_RULE}"
    if len(name) > 63:
        return "name part must be no more than 63 characters"
    return None if _NAME_PART.fullmatch(name) else _NAME_PART_RULE


def metadata_causes(meta: Doc) -> list[Cause]:
    """The API server's ObjectMeta rules: name syntax, label and annotation keys, label values."""
    causes = []
    name = meta.get("name")
    if not name:
        causes.append(
            Cause("metadata.name", "FieldValueRequired", "Required value: name or generateName is required")
        )
    elif len(name) > 253 or not _DNS_SUBDOMAIN.fullmatch(name):
        causes.append(
            Cause(
                "metadata.name", "FieldValueInvalid", f"Invalid value: {json.dumps(name)}: {_SUBDOMAIN_RULE}"
            )
        )
    for where in ("labels", "annotations"):
        for key, value in (meta.get(where) or {}).items():
            problem = _key_problem(key)
            if problem:
                causes.append(
                    Cause(
                        f"metadata.{where}",
                        "FieldValueInvalid",
                        f"Invalid value: {json.dumps(key)}: {problem}",
                    )
                )
            if where == "labels" and isinstance(value, str):
                problem = "must be no more than 63 characters" if len(value) > 63 else None
                if problem is None and not _LABEL_VALUE.fullmatch(value):
                    problem = _LABEL_VALUE_RULE
                if problem:
                    causes.append(
                        Cause(
                            "metadata.labels",
                            "FieldValueInvalid",
                            f"Invalid value: {json.dumps(value)}: {problem}",
                        )
                    )
    size = sum(len(k) + len(v) for k, v in (meta.get("annotations") or {}).items() if isinstance(v, str))
    if size > _ANNOTATIONS_LIMIT:
        causes.append(
            Cause(
                "metadata.annotations",
                "FieldValueTooLong",
                f"Too long: must have at most {_ANNOTATIONS_LIMIT} bytes",
            )
        )
    return causes


# --- built-in kinds ----------------------------------------------------------------------------


def _json_path(parts: Iterable[Any]) -> str:
    path = ""
    for part in parts:
        path = _child(path, part)
    return path


@cache
def _built_in_validator(kind: str, api_version: str) -> Any:
    """kubernetes-validate's strict schema of one kind, as its ``validate`` builds it, built once:
    ``validate`` reads the whole definitions file at every call (tens of ms a request)."""
    import jsonschema
    from kubernetes_validate.utils import all_versions, major_minor, schema_contents
    from referencing import Registry, Resource

    version = [v for v in all_versions() if major_minor(v) <= KUBERNETES_VERSION][-1]
    folder = f"kubernetes-json-schema/v{version}-local-strict"
    group_version = re.sub(r"^([^./]*)(?:\.[^/]*)?/", r"\1-", api_version)
    schema = schema_contents(f"{folder}/{kind.lower()}-{group_version}.json", version)
    definitions = schema_contents(f"{folder}/_definitions.json", version)
    registry = Resource.from_contents(definitions) @ (Resource.from_contents(schema) @ Registry())
    return jsonschema.validators.Draft202012Validator(schema, registry=registry)


def built_in_problems(obj: Doc) -> tuple[list[str], list[Cause]]:
    """(unknown fields, other causes) of a built-in kind, from its Kubernetes OpenAPI schema
    (kubernetes-validate's, strict; the first problem is reported) and the server's own rules for
    Leases and Events."""
    import jsonschema

    unknown: list[str] = []
    causes: list[Cause] = []
    try:
        _built_in_validator(obj["kind"], obj["apiVersion"]).validate(obj)
    except jsonschema.ValidationError as error:
        path = _json_path(error.absolute_path)
        if error.validator == "additionalProperties":
            known = error.schema.get("properties", {})
            unknown = [_child(path, key) for key in error.instance if key not in known]
        elif error.validator == "required":
            missing = [name for name in error.validator_value if name not in error.instance]
            causes = [Cause(_child(path, name), "FieldValueRequired", "Required value") for name in missing]
        else:
            causes = [
                Cause(
                    path, "FieldValueInvalid", f"Invalid value: {json.dumps(error.instance)}: {error.message}"
                )
            ]
    spec = obj.get("spec") or {}
    if obj["kind"] == "Lease":
        for name in ("leaseDurationSeconds", "leaseTransitions"):
            floor = 1 if name == "leaseDurationSeconds" else 0
            if isinstance(spec.get(name), int) and spec[name] < floor:
                rule = "must be greater than 0" if floor else "must be greater than or equal to 0"
                causes.append(
                    Cause(f"spec.{name}", "FieldValueInvalid", f"Invalid value: {spec[name]}: {rule}")
                )
    if obj["kind"] == "Event":
        namespace = obj["metadata"].get("namespace")
        involved = (obj.get("involvedObject") or {}).get("namespace", "")
        if involved != namespace:
            causes.append(
                Cause(
                    "involvedObject.namespace",
                    "FieldValueInvalid",
                    f"Invalid value: {json.dumps(involved)}: does not match event.namespace",
                )
            )
    return unknown, causes


# Times are decoded before validation: a value in another layout is a 400. MicroTime takes exactly
# six fractional digits (Python's isoformat() writes none when the microseconds are 0); Time takes
# RFC 3339 with a zone (a naive datetime's isoformat() has none).
_SECONDS, _ZONE = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d", r"(Z|[+-]\d\d:\d\d)"
_MICRO_TIME = ("2006-01-02T15:04:05.000000Z07:00", re.compile(rf"{_SECONDS}\.\d{{6}}{_ZONE}"))
_TIME = ("2006-01-02T15:04:05Z07:00", re.compile(rf"{_SECONDS}(\.\d+)?{_ZONE}"))
_TIME_FIELDS = {
    "Lease": ((("spec", "acquireTime"), _MICRO_TIME), (("spec", "renewTime"), _MICRO_TIME)),
    "Event": (
        (("eventTime",), _MICRO_TIME),
        (("series", "lastObservedTime"), _MICRO_TIME),
        (("firstTimestamp",), _TIME),
        (("lastTimestamp",), _TIME),
    ),
}


def time_problem(obj: Doc) -> str | None:
    """The decoder's refusal of the first time field of a built-in kind in the wrong layout."""
    for path, (layout, pattern) in _TIME_FIELDS.get(obj.get("kind"), ()):
        value: Any = obj
        for part in path:
            value = value.get(part) if isinstance(value, dict) else None
        if isinstance(value, str) and not pattern.fullmatch(value):
            return f'parsing time "{value}" as "{layout}": cannot parse "{value[19:]}" as "{layout[19:]}"'
    return None


# --- patches -----------------------------------------------------------------------------------


def apply_merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386, written independently of the code under test."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = apply_merge_patch(result.get(key), value)
    return result


class _PatchFailed(Exception):
    pass


def _pointer(text: str) -> list[str]:
    if text == "":
        return []
    if not text.startswith("/"):
        raise _PatchFailed(f"invalid JSON pointer {text!r}")
    return [part.replace("~1", "/").replace("~0", "~") for part in text[1:].split("/")]


def _parent(document: Any, parts: list[str]) -> tuple[Any, str]:
    node = document
    for part in parts[:-1]:
        try:
            node = node[int(part)] if isinstance(node, list) else node[part]
        except (KeyError, IndexError, ValueError, TypeError):
            raise _PatchFailed(f"missing value at /{'/'.join(parts)}") from None
    return node, parts[-1]


def apply_json_patch(document: Any, operations: list[Doc]) -> Any:
    """RFC 6902 (add, remove, replace, move, copy, test) on a copy of ``document``."""
    document = copy.deepcopy(document)

    def get(parts: list[str]) -> Any:
        if not parts:
            return document
        node, last = _parent(document, parts)
        try:
            return node[int(last)] if isinstance(node, list) else node[last]
        except (KeyError, IndexError, ValueError, TypeError):
            raise _PatchFailed(f"missing value at /{'/'.join(parts)}") from None

    def remove(parts: list[str]) -> Any:
        value = get(parts)
        node, last = _parent(document, parts)
        del node[int(last) if isinstance(node, list) else last]
        return value

    def add(parts: list[str], value: Any) -> None:
        nonlocal document
        if not parts:
            document = value
            return
        node, last = _parent(document, parts)
        if isinstance(node, list):
            index = len(node) if last == "-" else int(last)
            if not 0 <= index <= len(node):
                raise _PatchFailed(f"index out of range at /{'/'.join(parts)}")
            node.insert(index, value)
        elif isinstance(node, dict):
            node[last] = value
        else:
            raise _PatchFailed(f"missing value at /{'/'.join(parts)}")

    for operation in operations:
        if not isinstance(operation, dict) or "path" not in operation:
            raise _PatchFailed(f"invalid operation {operation!r}")
        kind, parts = operation.get("op"), _pointer(operation["path"])
        if kind == "add":
            add(parts, copy.deepcopy(operation["value"]))
        elif kind == "remove":
            remove(parts)
        elif kind == "replace":
            remove(parts)
            add(parts, copy.deepcopy(operation["value"]))
        elif kind == "move":
            add(parts, remove(_pointer(operation["from"])))
        elif kind == "copy":
            add(parts, copy.deepcopy(get(_pointer(operation["from"]))))
        elif kind == "test":
            if get(parts) != operation["value"]:
                raise _PatchFailed(f"testing value {operation['path']} failed: test failed")
        else:
            raise _PatchFailed(f"unexpected kind of operation {kind!r}")
    return document


MERGE_PATCH = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"
STRATEGIC_MERGE_PATCH = "application/strategic-merge-patch+json"
APPLY_PATCH = "application/apply-patch+yaml"

# --- RBAC --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ServiceAccount:
    """Who the requests come from, and the PolicyRules bound to them in their namespace."""

    namespace: str
    name: str
    rules: tuple[Doc, ...]

    @property
    def user(self) -> str:
        return f"system:serviceaccount:{self.namespace}:{self.name}"

    @classmethod
    def from_rendered(cls, docs: list[Doc], namespace: str, name: str) -> ServiceAccount:
        return cls(namespace, name, tuple(rules_for_service_account(docs, namespace, name)))

    def allows(self, verb: str, group: str, resource: str, name: str | None) -> bool:
        return any(_rule_allows(rule, verb, group, resource, name) for rule in self.rules)


def _rule_allows(rule: Doc, verb: str, group: str, resource: str, name: str | None) -> bool:
    resources = rule.get("resources") or []
    _, _, subresource = resource.partition("/")
    return (
        any(item in ("*", group) for item in rule.get("apiGroups") or [])
        and any(item in ("*", verb) for item in rule.get("verbs") or [])
        and any(item in ("*", resource) or (subresource and item == f"*/{subresource}") for item in resources)
        and (not rule.get("resourceNames") or name in rule["resourceNames"])
    )


def rules_for_service_account(docs: list[Doc], namespace: str, service_account: str) -> list[Doc]:
    """The PolicyRules that rendered Roles, ClusterRoles and their bindings give a ServiceAccount
    in ``namespace`` (objects without a namespace, as ``helm template`` renders them, are in it)."""
    user = f"system:serviceaccount:{namespace}:{service_account}"
    groups = {"system:serviceaccounts", f"system:serviceaccounts:{namespace}", "system:authenticated"}

    def namespace_of(doc: Doc) -> str:
        return doc["metadata"].get("namespace") or namespace

    def binds(binding: Doc) -> bool:
        for subject in binding.get("subjects") or []:
            kind, name = subject.get("kind"), subject.get("name")
            in_namespace = (subject.get("namespace") or namespace_of(binding)) == namespace
            if kind == "ServiceAccount" and name == service_account and in_namespace:
                return True
            if (kind == "User" and name == user) or (kind == "Group" and name in groups):
                return True
        return False

    roles = {
        (doc["kind"], namespace_of(doc) if doc["kind"] == "Role" else "", doc["metadata"]["name"]): doc
        for doc in docs
        if doc.get("kind") in ("Role", "ClusterRole")
    }
    rules: list[Doc] = []
    for binding in docs:
        kind = binding.get("kind")
        in_namespace = kind == "RoleBinding" and namespace_of(binding) == namespace
        if (in_namespace or kind == "ClusterRoleBinding") and binds(binding):
            ref = binding["roleRef"]
            key = (
                ("Role", namespace, ref["name"])
                if ref["kind"] == "Role"
                else ("ClusterRole", "", ref["name"])
            )
            rules += copy.deepcopy((roles.get(key) or {}).get("rules") or [])
    return rules


def _forbidden(
    rt: ResourceType, user: str, verb: str, resource: str, namespace: str | None, name: str | None
) -> ApiError:
    what = f'{rt.group_resource} "{name}"' if name else rt.group_resource
    scope = f'in the namespace "{namespace}"' if namespace else "at the cluster scope"
    message = (
        f'{what} is forbidden: User "{user}" cannot {verb} resource "{resource}" in API group '
        f'"{rt.group}" {scope}'
    )
    return ApiError(403, "Forbidden", message, _details(rt, name))


# --- the emulated server -----------------------------------------------------------------------

_PATH = re.compile(
    r"^/(?:api/(?P<core>v1)|apis/(?P<group>[^/]+)/(?P<version>[^/]+))"
    r"(?:/namespaces/(?P<namespace>[^/]+))?/(?P<plural>[^/]+)(?:/(?P<name>[^/]+)(?:/(?P<sub>[^/]+))?)?$"
)
_GENERATED_NAME_LETTERS = "bcdfghjklmnpqrstvwxz2456789"


@dataclass
class Request:
    """One request the emulator answered."""

    method: str
    path: str
    query: dict[str, str]
    content_type: str
    body: Any
    status: int


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _spec_part(obj: Doc, rt: ResourceType) -> Doc:
    """What ``metadata.generation`` counts changes of."""
    ignored = {"metadata", "status"} if rt.status_subresource else {"metadata"}
    return {key: value for key, value in obj.items() if key not in ignored}


def _label_selector_matches(selector: str, labels: dict[str, str]) -> bool:
    if "(" in selector:
        raise _bad_request("the emulator reads equality-based label selectors only (no `in`/`notin`)")
    for term in (part.strip() for part in selector.split(",")):
        if not term:
            continue
        if "!=" in term:
            key, _, value = term.partition("!=")
            matched = labels.get(key.strip()) != value.strip()
        elif "=" in term:
            key, _, value = term.replace("==", "=").partition("=")
            matched = labels.get(key.strip()) == value.strip()
        elif term.startswith("!"):
            matched = term[1:].strip() not in labels
        else:
            matched = term in labels
        if not matched:
            return False
    return True


class KubeApi:
    """The API server's state and behaviour; ``running_kube_api`` serves it over HTTP."""

    def __init__(
        self,
        *,
        identity: ServiceAccount | None = None,
        crds: Path = CRDS_DIR,
        default_field_validation: str = "Strict",
    ) -> None:
        if not crds.is_dir():
            pytest.skip(
                f"CRDs not found at {crds}: the Kubernetes API emulator cannot validate custom objects"
            )
        self.identity = identity
        self.default_field_validation = default_field_validation
        self.url = ""
        self.requests: list[Request] = []
        self.types = [*custom_resource_types(crds), *BUILT_IN]
        self._served = {(rt.group, rt.version, rt.plural): rt for rt in self.types}
        self._store: dict[tuple[str, str, str, str], Doc] = {}  # (group, plural, namespace, name)
        self._revision = 0
        self._lock = threading.RLock()

    # --- what tests call directly ---

    def resource_type(self, resource: str) -> ResourceType:
        """A served type by kind (``InferenceService``), plural or ``plural.group`` (stored version)."""
        for rt in self.types:
            if rt.stored_version and resource in (rt.kind, rt.plural, rt.group_resource):
                return rt
        raise KeyError(f"no served resource {resource!r}")

    def _type_of(self, obj: Doc) -> ResourceType:
        group, _, version = obj.get("apiVersion", "").rpartition("/")
        for rt in self.types:
            if (rt.group, rt.version, rt.kind) == (group, version, obj.get("kind")):
                return rt
        raise KeyError(f"no served resource for {obj.get('apiVersion')} {obj.get('kind')}")

    def add(self, obj: Doc, namespace: str | None = None) -> Doc:
        """Store ``obj`` (its status too) as a create would, checked the same way: an invalid seed
        raises ``ApiError`` naming the problem. Returns the stored object."""
        rt = self._type_of(obj)
        namespace = namespace or obj.get("metadata", {}).get("namespace") or "default"
        with self._lock:
            return self._create(rt, namespace, copy.deepcopy(obj), {}, keep_status=True)[0]

    def load_rendered(
        self, docs: list[Doc], kinds: Iterable[str] = ("InferenceService",), namespace: str = "default"
    ) -> list[Doc]:
        """Store the rendered objects of ``kinds`` (``namespace`` for those the render left without one)."""
        wanted = set(kinds)
        return [
            self.add(doc, doc["metadata"].get("namespace") or namespace)
            for doc in docs
            if doc["kind"] in wanted
        ]

    def get(self, resource: str, namespace: str, name: str) -> Doc | None:
        """A copy of the stored object (None: there is none)."""
        rt = self.resource_type(resource)
        with self._lock:
            stored = self._store.get((rt.group, rt.plural, namespace, name))
            return None if stored is None else self._as_version(stored, rt)

    def objects(self, resource: str, namespace: str | None = None) -> list[Doc]:
        """Copies of the stored objects of a resource (in one namespace, or all), oldest first."""
        rt = self.resource_type(resource)
        with self._lock:
            return [
                self._as_version(obj, rt)
                for (group, plural, ns, _), obj in self._store.items()
                if (group, plural) == (rt.group, rt.plural) and namespace in (None, ns)
            ]

    def set_status(self, resource: str, namespace: str, name: str, status: Doc | None) -> Doc:
        """Write the status as its controller (KServe, the Trainer) would: checked, a new resourceVersion."""
        rt = self.resource_type(resource)
        with self._lock:
            current = self._current(rt, namespace, name)
            incoming = {**self._as_version(current, rt), "status": copy.deepcopy(status)}
            return self._update(rt, namespace, name, current, incoming, "status", {})[0]

    def writes(self) -> list[Request]:
        """The requests that asked to change something, in order."""
        return [request for request in self.requests if request.method in ("POST", "PUT", "PATCH", "DELETE")]

    # --- HTTP ---

    def handle(
        self, method: str, path: str, query: dict[str, str], content_type: str, body: Any
    ) -> tuple[int, Doc, list[str]]:
        """(status code, answer, warnings) for one request; logged in ``requests``."""
        try:
            code, answer, warnings = self._route(method, path, query, content_type, body)
        except ApiError as error:
            code, answer, warnings = error.code, error.status(), []
        except Exception as error:  # an emulator bug: say so to the client instead of dropping the connection
            failure = ApiError(500, "InternalError", f"the emulator failed: {type(error).__name__}: {error}")
            code, answer, warnings = 500, failure.status(), []
        self.requests.append(Request(method, path, query, content_type, copy.deepcopy(body), code))
        return code, answer, warnings

    def _route(
        self, method: str, path: str, query: dict[str, str], content_type: str, body: Any
    ) -> tuple[int, Doc, list[str]]:
        match = _PATH.match(path)
        rt = None
        if match:
            group = "" if match["core"] else match["group"]
            rt = self._served.get((group, match["core"] or match["version"], match["plural"]))
        sub = match["sub"] if match else None
        if rt is None or (sub is not None and not (sub == "status" and rt.status_subresource)):
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        namespace, name = match["namespace"], match["name"]
        watch = query.get("watch") in ("true", "1")
        verb = {
            "GET": "watch" if watch else ("get" if name else "list"),
            "POST": "create",
            "PUT": "update",
            "PATCH": "patch",
            "DELETE": "delete" if name else "deletecollection",
        }.get(method)
        resource = f"{rt.plural}/{sub}" if sub else rt.plural
        if verb is None:
            raise ApiError(
                405, "MethodNotAllowed", "the server does not allow this method on the requested resource"
            )
        if self.identity is not None and not (
            namespace == self.identity.namespace and self.identity.allows(verb, rt.group, resource, name)
        ):
            raise _forbidden(rt, self.identity.user, verb, resource, namespace, name)
        if namespace is None:
            raise ApiError(404, "NotFound", "the emulator serves namespaced requests only")
        with self._lock:
            if verb == "get":
                return 200, self._as_version(self._current(rt, namespace, name), rt), []
            if verb == "list":
                return 200, self._list(rt, namespace, query), []
            if verb == "create" and not name:
                obj, warnings = self._create(rt, namespace, self._object_body(body), query)
                return 201, obj, warnings
            if verb == "update":
                current = self._current(rt, namespace, name)
                incoming = self._object_body(body)
                if rt.custom and not (incoming.get("metadata") or {}).get("resourceVersion"):
                    cause = Cause(
                        "metadata.resourceVersion",
                        "FieldValueInvalid",
                        "Invalid value: 0x0: must be specified for an update",
                    )
                    raise _invalid(rt, name, [cause])
                obj, warnings = self._update(rt, namespace, name, current, incoming, sub, query)
                return 200, obj, warnings
            if verb == "patch":
                current = self._current(rt, namespace, name)
                incoming = self._patched(rt, self._as_version(current, rt), content_type, body)
                obj, warnings = self._update(rt, namespace, name, current, incoming, sub, query)
                return 200, obj, warnings
            if verb == "delete" and sub is None:
                return 200, self._delete(rt, namespace, name, body, query), []
        raise ApiError(405, "MethodNotAllowed", f"the emulator does not serve {verb} on {resource}")

    # --- verbs ---

    def _current(self, rt: ResourceType, namespace: str, name: str) -> Doc:
        stored = self._store.get((rt.group, rt.plural, namespace, name))
        if stored is None:
            raise _not_found(rt, name)
        return stored

    def _as_version(self, obj: Doc, rt: ResourceType) -> Doc:
        return {**copy.deepcopy(obj), "apiVersion": rt.api_version}

    def _list(self, rt: ResourceType, namespace: str, query: dict[str, str]) -> Doc:
        selector = query.get("labelSelector", "")
        items = [
            self._as_version(obj, rt)
            for (group, plural, ns, _), obj in self._store.items()
            if (group, plural, ns) == (rt.group, rt.plural, namespace)
            and _label_selector_matches(selector, obj["metadata"].get("labels") or {})
        ]
        return {
            "apiVersion": rt.api_version,
            "kind": f"{rt.kind}List",
            "metadata": {"resourceVersion": str(self._revision)},
            "items": items,
        }

    @staticmethod
    def _object_body(body: Any) -> Doc:
        if not isinstance(body, dict):
            raise _not_an_object(body)
        return copy.deepcopy(body)

    def _check_type_meta(self, rt: ResourceType, obj: Doc, namespace: str, name: str | None) -> None:
        """apiVersion, kind, namespace and name as the request's path says (built-ins default them)."""
        if not rt.custom:
            obj.setdefault("apiVersion", rt.api_version)
            obj.setdefault("kind", rt.kind)
        if not obj.get("kind"):
            raise _bad_request(f"Object 'Kind' is missing in '{json.dumps(obj)}'")
        if obj.get("apiVersion") != rt.api_version or obj["kind"] != rt.kind:
            raise _bad_request(
                f"the API version in the data ({obj.get('apiVersion')}) and kind ({obj['kind']}) do not "
                f"match the expected API version ({rt.api_version}) and kind ({rt.kind})"
            )
        meta = obj.get("metadata")
        if meta is None:
            meta = obj["metadata"] = {}
        if not isinstance(meta, dict):
            raise _bad_request("metadata must be an object")
        if meta.get("namespace") not in (None, "", namespace):
            raise _bad_request(
                "the namespace of the provided object does not match the namespace sent on the request"
            )
        meta["namespace"] = namespace
        if name is not None and meta.get("name") != name:
            raise _bad_request(
                f"the name of the object ({meta.get('name')}) does not match the name on the URL ({name})"
            )

    def _admit(self, rt: ResourceType, obj: Doc, query: dict[str, str]) -> list[str]:
        """Normalize and validate ``obj`` in place; raise the refusal; return warnings."""
        mode = query.get("fieldValidation") or self.default_field_validation
        name = obj["metadata"].get("name") or ""
        if rt.custom:
            unknown = normalize(obj, rt.schema, prune=mode != "Strict")
            causes = [] if unknown and mode == "Strict" else validate(obj, rt.schema)
        else:
            problem = time_problem(obj)
            if problem:
                raise _undecodable(rt, problem)
            unknown, causes = built_in_problems(obj)
        if unknown and (mode == "Strict" or not rt.custom):
            fields = ", ".join(f'unknown field "{path}"' for path in unknown)
            raise _undecodable(rt, f"strict decoding error: {fields}")
        causes += metadata_causes(obj["metadata"])
        if causes:
            raise _invalid(rt, name, causes)
        return [f'unknown field "{path}"' for path in unknown] if mode == "Warn" else []

    def _next_revision(self) -> str:
        self._revision += 1
        return str(self._revision)

    def _create(
        self, rt: ResourceType, namespace: str, obj: Doc, query: dict[str, str], *, keep_status: bool = False
    ) -> tuple[Doc, list[str]]:
        self._check_type_meta(rt, obj, namespace, None)
        meta = obj["metadata"]
        if not meta.get("name") and meta.get("generateName"):
            meta["name"] = meta["generateName"] + "".join(random.choices(_GENERATED_NAME_LETTERS, k=5))
        if rt.status_subresource and not keep_status:
            obj.pop("status", None)
        for system in ("resourceVersion", "uid", "creationTimestamp", "generation", "deletionTimestamp"):
            meta.pop(system, None)
        warnings = self._admit(rt, obj, query)
        key = (rt.group, rt.plural, namespace, meta["name"])
        if key in self._store:
            raise ApiError(
                409,
                "AlreadyExists",
                f'{rt.group_resource} "{meta["name"]}" already exists',
                _details(rt, meta["name"]),
            )
        meta.update(uid=str(uuid.uuid4()), creationTimestamp=_now())
        if rt.custom:
            meta["generation"] = 1
        meta["resourceVersion"] = str(self._revision + 1)
        if query.get("dryRun") != "All":
            self._next_revision()
            self._store[key] = copy.deepcopy(obj)
        return self._as_version(obj, rt), warnings

    def _patched(self, rt: ResourceType, current: Doc, content_type: str, body: Any) -> Doc:
        if content_type == JSON_PATCH:
            if not isinstance(body, list):
                raise _bad_request(
                    f"json: cannot unmarshal {_type_name(body)} into Go value of type jsonpatch.Patch"
                )
            try:
                return apply_json_patch(current, body)
            except _PatchFailed as error:
                raise ApiError(422, "Invalid", str(error)) from None
        if content_type == MERGE_PATCH or (content_type == STRATEGIC_MERGE_PATCH and not rt.custom):
            if not isinstance(body, dict):
                raise _not_an_object(body)
            return apply_merge_patch(current, body)
        if content_type == APPLY_PATCH:
            raise ApiError(415, "UnsupportedMediaType", "server-side apply is not emulated")
        accepted = [JSON_PATCH, MERGE_PATCH, APPLY_PATCH] + ([] if rt.custom else [STRATEGIC_MERGE_PATCH])
        raise ApiError(
            415,
            "UnsupportedMediaType",
            "the body of the request was in an unknown format - accepted media types include: "
            + ", ".join(accepted),
        )

    def _update(
        self,
        rt: ResourceType,
        namespace: str,
        name: str,
        current: Doc,
        incoming: Doc,
        sub: str | None,
        query: dict[str, str],
    ) -> tuple[Doc, list[str]]:
        """Store ``incoming`` as the new state of ``current`` (PUT, PATCH and status writes)."""
        current = self._as_version(current, rt)  # compared in the request's version
        self._check_type_meta(rt, incoming, namespace, name)
        current_meta = current["metadata"]
        wanted = incoming["metadata"].get("resourceVersion")
        if wanted and wanted != current_meta["resourceVersion"]:
            raise _conflict(rt, name, MODIFIED)
        if sub == "status":  # only the status changes through the subresource
            status = incoming.get("status")
            incoming = copy.deepcopy(current)
            incoming.pop("status", None)
            if status is not None:
                incoming["status"] = status
        elif rt.status_subresource:  # the main resource ignores status changes
            incoming.pop("status", None)
            if "status" in current:
                incoming["status"] = copy.deepcopy(current["status"])
        meta = incoming["metadata"]
        for system in ("uid", "creationTimestamp", "deletionTimestamp", "generation", "resourceVersion"):
            meta.pop(system, None)
            if system in current_meta:
                meta[system] = current_meta[system]
        warnings = self._admit(rt, incoming, query)
        if rt.custom and _spec_part(incoming, rt) != _spec_part(current, rt):
            meta["generation"] = current_meta.get("generation", 1) + 1
        if incoming == current:  # nothing changed: nothing is written
            return self._as_version(current, rt), warnings
        meta["resourceVersion"] = str(self._revision + 1)
        if query.get("dryRun") != "All":
            self._next_revision()
            key = (rt.group, rt.plural, namespace, name)
            if meta.get("deletionTimestamp") and not meta.get("finalizers"):
                del self._store[key]
            else:
                self._store[key] = copy.deepcopy(incoming)
        return self._as_version(incoming, rt), warnings

    def _delete(self, rt: ResourceType, namespace: str, name: str, body: Any, query: dict[str, str]) -> Doc:
        current = self._current(rt, namespace, name)
        preconditions = (body.get("preconditions") if isinstance(body, dict) else None) or {}
        for key, label in (("resourceVersion", "ResourceVersion"), ("uid", "UID")):
            wanted, actual = preconditions.get(key), current["metadata"].get(key)
            if wanted and wanted != actual:
                why = f"Precondition failed: {label} in precondition: {wanted}, {label} in object meta: "
                why += str(actual)
                raise _conflict(rt, name, why)
        if query.get("dryRun") == "All":
            return self._as_version(current, rt)
        if current["metadata"].get("finalizers"):  # marked; its controllers finish the deletion
            if not current["metadata"].get("deletionTimestamp"):
                current["metadata"].update(deletionTimestamp=_now(), resourceVersion=self._next_revision())
            return self._as_version(current, rt)
        del self._store[(rt.group, rt.plural, namespace, name)]
        self._next_revision()
        if rt.custom:
            return self._as_version(current, rt)
        return {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Success",
            "details": _details(rt, name),
        }


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    # Headers and body go out in two writes: without TCP_NODELAY the body waits for the client's
    # delayed ACK (tens of milliseconds a request).
    disable_nagle_algorithm = True

    def log_message(self, *args: Any) -> None:
        pass

    def _serve(self) -> None:
        url = urlparse(self.path)
        query = {key: values[-1] for key, values in parse_qs(url.query).items()}
        content_type = (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        try:
            body = json.loads(raw) if raw else None
        except ValueError as error:
            code, answer, warnings = 400, ApiError(400, "BadRequest", f"invalid JSON: {error}").status(), []
        else:
            code, answer, warnings = self.server.api.handle(self.command, url.path, query, content_type, body)
        data = json.dumps(answer).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for warning in warnings:
            self.send_header("Warning", f"299 - {json.dumps(warning)}")
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _serve  # noqa: N815 (http.server's names)


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, api: KubeApi) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.api = api


@contextmanager
def running_kube_api(**options: Any) -> Iterator[KubeApi]:
    """A ``KubeApi(**options)`` served on a free 127.0.0.1 port for the block (its ``url``)."""
    api = KubeApi(**options)
    server = _Server(api)
    api.url = f"http://127.0.0.1:{server.server_address[1]}"
    # A short poll interval: shutdown() waits up to one interval, at every test's teardown.
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield api
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


class KubeClients(NamedTuple):
    """The official client's APIs, pointed at one server."""

    custom: Any  # kubernetes.client.CustomObjectsApi
    core: Any  # kubernetes.client.CoreV1Api
    coordination: Any  # kubernetes.client.CoordinationV1Api

    def close(self) -> None:
        self.custom.api_client.close()


def kube_clients_for(url: str) -> KubeClients:
    """(CustomObjectsApi, CoreV1Api, CoordinationV1Api) of one ApiClient talking to ``url``."""
    from kubernetes import client

    configuration = client.Configuration()
    configuration.host = url
    api_client = client.ApiClient(configuration)
    return KubeClients(
        client.CustomObjectsApi(api_client),
        client.CoreV1Api(api_client),
        client.CoordinationV1Api(api_client),
    )


def write_kubeconfig(path: Path, server: str, namespace: str | None = None) -> Path:
    """A kubeconfig whose only context is ``server`` with no credentials (for CLI subprocesses)."""
    context_namespace = f", namespace: {namespace}" if namespace else ""
    path.write_text(
        f"""apiVersion: v1
kind: Config
clusters: [{{name: stand-in, cluster: {{server: "{server}"}}}}]
users: [{{name: nobody, user: {{}}}}]
contexts: [{{name: stand-in, context: {{cluster: stand-in, user: nobody{context_namespace}}}}}]
current-context: stand-in
""",
        encoding="utf-8",
    )
    return path


# --- renders of the deployment -----------------------------------------------------------------


@cache
def _rendered(overlay: str, renderer: str) -> tuple[Doc, ...]:
    from tests.deploy.conftest import ENVIRONMENTS, helm_template, kustomize_text, parse

    if renderer == "kustomize":
        return tuple(parse(kustomize_text(overlay)))
    namespace, args = ENVIRONMENTS[overlay]
    result = helm_template(namespace, *args)
    assert result.returncode == 0, result.stderr
    return tuple(parse(result.stdout))


def render(overlay: str, renderer: str = "kustomize") -> list[Doc]:
    """The objects ``kubectl kustomize kustomize/overlays/<overlay>`` (or ``helm template`` with the
    environment's values) renders, rendered once per session; a fresh copy each call. Skips
    without kubectl (or helm)."""
    return copy.deepcopy(list(_rendered(overlay, renderer)))


def namespace_of(overlay: str) -> str:
    """The namespace an environment deploys to."""
    from tests.deploy.conftest import ENVIRONMENTS

    return ENVIRONMENTS[overlay][0]


# --- fixtures ----------------------------------------------------------------------------------


@pytest.fixture
def kube_api() -> Iterator[KubeApi]:
    """An empty validating API server; set ``identity`` to check RBAC, ``add`` to seed."""
    with running_kube_api() as api:
        yield api


@pytest.fixture
def kube_clients(kube_api: KubeApi) -> Iterator[KubeClients]:
    """The official client's APIs, pointed at ``kube_api``."""
    clients = kube_clients_for(kube_api.url)
    yield clients
    clients.close()
