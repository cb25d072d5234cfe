"""Turn a configured model reference into something ``from_pretrained`` loads offline.

A reference is ``bundled:NAME`` (a model ``twinops models pull`` cached under
``TWINOPS_HOME/models``), a local folder, or a Hugging Face id (loaded the normal way, from the
local HF cache when ``HF_HUB_OFFLINE=1``).
"""

from __future__ import annotations

import re
from pathlib import Path

from twinops.errors import ModelNotFound
from twinops.settings import Settings

BUNDLED_PREFIX = "bundled:"
_HF_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def resolve_model(reference: str, settings: Settings, *, setting: str) -> str:
    """A local folder path or an HF id for ``reference``; raise naming ``setting`` if unusable."""
    if reference.startswith(BUNDLED_PREFIX):
        folder = settings.models_dir / reference.removeprefix(BUNDLED_PREFIX)
        if not (folder / "config.json").exists():
            raise ModelNotFound(
                f"bundled model {reference!r} is not cached at {folder}: run `twinops models pull` "
                f"or set {setting} to a model path or HF id",
                setting=setting,
            )
        return str(folder)
    path = Path(reference).expanduser()
    if path.exists():
        if not (path / "config.json").exists():
            raise ModelNotFound(
                f"model path {path} has no config.json: set {setting} to a Hugging Face model folder",
                setting=setting,
            )
        return str(path.resolve())
    if _HF_ID.match(reference):
        return reference
    raise ModelNotFound(
        f"model {reference!r} is neither a folder nor a Hugging Face id: fix {setting}",
        setting=setting,
    )


def llm_path(settings: Settings) -> str:
    return resolve_model(settings.base_model, settings, setting="TWINOPS_BASE_MODEL")


def embedder_path(settings: Settings) -> str:
    return resolve_model(settings.embedding_model, settings, setting="TWINOPS_EMBEDDING_MODEL")
