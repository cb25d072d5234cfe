"""The Qdrant client: a server when TWINOPS_QDRANT_URL is set, else local mode on disk.

Local mode locks its folder to one process. twinops opens it only inside ``open_qdrant`` and
closes it on exit, so steps take turns (the CLI, then each KFP local task, one at a time).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from twinops.errors import ServiceUnavailable
from twinops.settings import Settings


@contextmanager
def open_qdrant(settings: Settings) -> Iterator[object]:
    from qdrant_client import QdrantClient

    if settings.qdrant_url:
        client = QdrantClient(url=settings.qdrant_url, api_key=settings.qdrant_api_key, timeout=30)
    else:
        path = settings.qdrant_local_path
        path.mkdir(parents=True, exist_ok=True)
        try:
            client = QdrantClient(path=str(path))
        except RuntimeError as error:  # raised when another process holds the folder lock
            raise ServiceUnavailable(
                f"Qdrant local folder {path} is in use by another process ({error}): wait for it "
                "to finish, or set TWINOPS_QDRANT_URL to a Qdrant server",
                setting="TWINOPS_QDRANT_URL",
            ) from error
    try:
        yield client
    finally:
        client.close()
