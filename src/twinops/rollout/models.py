"""Which model a canary serves: the URI checked and pinned before anything is patched.

``models:/NAME@ALIAS`` is pinned to the version the alias names now (``models:/NAME/VERSION``),
so a later alias move does not change what the canary serves, and promotion knows which version
takes ``champion``. On a cluster, storage URIs that KServe's storage initializer reads (``s3://``,
``gs://``, ``pvc://``, ``hf://``, ``oci://``, ``http(s)://``) pass unchecked: their store is not
reachable from here. Locally the URI must resolve to a model folder (a registry version, a folder,
``bundled:NAME``).
"""

from __future__ import annotations

from pydantic import BaseModel

from twinops.errors import ConfigError
from twinops.infra.registry import MODELS_SCHEME, registered_version, resolve_model_uri
from twinops.settings import Settings

MODEL_URI_FLAG = "--model-uri"
STORAGE_SCHEMES = ("s3://", "gs://", "pvc://", "hf://", "oci://", "https://", "http://")


class PinnedModel(BaseModel):
    uri: str
    requested_uri: str
    registry_name: str | None = None
    registry_version: str | None = None

    @property
    def label(self) -> str:
        if self.registry_name:
            return f"{self.registry_name} v{self.registry_version}"
        return self.uri


def pin_model_uri(uri: str, settings: Settings, *, local: bool) -> PinnedModel:
    """Check that ``uri`` names a model that exists; one line (exit 2) when it does not."""
    uri = uri.strip()
    if uri.startswith(MODELS_SCHEME):
        version, _ = registered_version(uri, settings, setting=MODEL_URI_FLAG)
        if local:  # the local canary loads the folder: it must be on this machine
            resolve_model_uri(uri, settings, setting=MODEL_URI_FLAG)
        return PinnedModel(
            uri=f"{MODELS_SCHEME}{version.name}/{version.version}",
            requested_uri=uri,
            registry_name=version.name,
            registry_version=version.version,
        )
    if local:
        resolved = resolve_model_uri(uri, settings, setting=MODEL_URI_FLAG)
        return PinnedModel(uri=resolved.model_dir, requested_uri=uri)
    if uri.startswith(STORAGE_SCHEMES):
        return PinnedModel(uri=uri, requested_uri=uri)
    raise ConfigError(
        f"{MODEL_URI_FLAG} {uri!r} is not a model a cluster can load: use models:/NAME@ALIAS, "
        f"models:/NAME/VERSION or a storage URI ({', '.join(s.rstrip(':/') for s in STORAGE_SCHEMES)})"
    )
