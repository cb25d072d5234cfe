"""The Qdrant client: a server when TWINOPS_QDRANT_URL is set, else local mode on disk.

A server that does not answer (down, wrong URL, refused API key) is ``ServiceUnavailable`` when
``open_qdrant`` opens it, before any step has written anything.

Local mode locks its folder to one process. twinops opens it only inside ``open_qdrant`` and
closes it on exit, so steps take turns (the CLI, then each KFP local task, one at a time).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from twinops.errors import ServiceUnavailable
from twinops.settings import Settings


def _require_reachable(client, url: str) -> None:
    """One round trip, so a server that is down or refuses the key fails here with one line."""
    from qdrant_client.http.exceptions import ApiException

    try:
        client.get_collections()
    except ApiException as error:
        client.close()
        reason = (str(error).splitlines() or [type(error).__name__])[0][:160]
        raise ServiceUnavailable(
            f"Qdrant at {url} did not answer ({reason}): start it, fix TWINOPS_QDRANT_URL (and "
            "TWINOPS_QDRANT_API_KEY), or unset it to use local mode",
            setting="TWINOPS_QDRANT_URL",
        ) from error


@contextmanager
def open_qdrant(settings: Settings) -> Iterator[object]:
    from qdrant_client import QdrantClient

    if settings.qdrant_url:
        # The probe below checks the server; the client's own version check would only warn.
        client = QdrantClient(
            url=settings.qdrant_url, api_key=settings.qdrant_api_key, timeout=30, check_compatibility=False
        )
        _require_reachable(client, settings.qdrant_url)
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
