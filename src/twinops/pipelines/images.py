"""The one place that names the container images components run in.

Three image families, each built from ``images/<family>/Dockerfile``:

- ``data``: CPU, python:3.11-slim with torch CPU; ETL, features, datasets, registry steps.
- ``train``: CUDA base with torch, trl, peft, accelerate; SFT, DPO, reranker, evaluation.
- ``quantize``: the gptqmodel environment (its protobuf pin cannot share an image with kfp).

The registry and tag come from ``TWINOPS_IMAGE_REGISTRY`` and ``TWINOPS_IMAGE_TAG`` so a fork
pushes to its own registry without touching a component. Components read these at import time
(the image is baked into the component spec), so set them before compiling.
"""

from __future__ import annotations

import os
import re
from enum import StrEnum

from twinops import __version__
from twinops.errors import ConfigError

DEFAULT_REGISTRY = "ghcr.io/twinops"
REGISTRY_ENV = "TWINOPS_IMAGE_REGISTRY"
TAG_ENV = "TWINOPS_IMAGE_TAG"

# A registry host with optional port and path; a tag as Docker accepts it.
_REGISTRY_PATTERN = re.compile(r"^[a-z0-9]+([._-][a-z0-9]+)*(:[0-9]+)?(/[a-z0-9]+([._-][a-z0-9]+)*)*$")
_TAG_PATTERN = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")


class ImageFamily(StrEnum):
    DATA = "data"
    TRAIN = "train"
    QUANTIZE = "quantize"


def image_registry() -> str:
    registry = os.environ.get(REGISTRY_ENV, DEFAULT_REGISTRY).strip().rstrip("/")
    if not _REGISTRY_PATTERN.match(registry):
        raise ConfigError(
            f"image registry {registry!r} is not a valid registry path (e.g. ghcr.io/me)",
            setting=REGISTRY_ENV,
        )
    return registry


def image_tag() -> str:
    tag = os.environ.get(TAG_ENV, __version__).strip()
    if not _TAG_PATTERN.match(tag) or tag == "latest":
        raise ConfigError(
            f"image tag {tag!r} is not a pinned tag (letters, digits, . _ -; never 'latest')", setting=TAG_ENV
        )
    return tag


def image(family: ImageFamily | str) -> str:
    """The full image reference for a family, e.g. ``ghcr.io/twinops/twinops-train:0.1.0``."""
    family = ImageFamily(family)
    return f"{image_registry()}/twinops-{family.value}:{image_tag()}"


def all_images() -> dict[str, str]:
    return {family.value: image(family) for family in ImageFamily}
