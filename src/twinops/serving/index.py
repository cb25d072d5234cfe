"""Read access to the chunks behind the Qdrant alias ``twin_chunks``, for a long-running server.

With a Qdrant server (``TWINOPS_QDRANT_URL``) every search goes to the server and the alias
resolves there, so a feature run that moves the alias is seen by the next search.

In local mode one process at a time may hold the Qdrant folder, and a feature run needs it. So
``LiveIndex`` opens the folder only briefly: it copies the collection behind the alias (vectors and
payloads) into an in-memory Qdrant, closes the folder, and serves searches from the copy.
``refresh()`` opens the folder again, briefly, and reloads when the alias points at another
collection or the collection's points changed; when another process holds the folder it keeps
serving the copy it has and tries again at the next refresh. With ``refresh_interval`` a search
refreshes lazily once the last check is that many seconds old.
"""

from __future__ import annotations

import logging
import threading
import time
from contextlib import ExitStack
from datetime import datetime

from pydantic import BaseModel, ConfigDict

from twinops.domain.documents import utcnow
from twinops.domain.hashing import content_hash
from twinops.errors import NotFound, ServiceUnavailable
from twinops.features.vector_store import CHUNKS_ALIAS, ScoredChunk, VectorStore
from twinops.infra.qdrant import open_qdrant
from twinops.settings import Settings

log = logging.getLogger(__name__)

_SCROLL_PAGE = 1024


class IndexVersion(BaseModel):
    """Which index answered: the collection behind the alias and its contents when last checked."""

    model_config = ConfigDict(frozen=True)

    collection: str
    points: int
    fingerprint: str
    checked_at: datetime
    source: str

    def __str__(self) -> str:
        return f"{self.collection} ({self.points} points, {self.source})"


class _Snapshot:
    """An in-memory copy of one collection, searched through the project's VectorStore."""

    def __init__(self, version: IndexVersion, store: VectorStore) -> None:
        self.version = version
        self.store = store


def _fingerprint(point_ids: set[str]) -> str:
    """Chunk ids are content-derived, so the id set changes whenever any chunk's text does."""
    return content_hash(sorted(point_ids))[:16]


class LiveIndex:
    """Searches the chunk collection behind ``alias``, following the alias when it moves."""

    def __init__(
        self,
        settings: Settings,
        *,
        alias: str = CHUNKS_ALIAS,
        refresh_interval: float | None = None,
    ) -> None:
        self.settings = settings
        self.alias = alias
        self.refresh_interval = refresh_interval
        self.last_error: str | None = None
        self._refresh_lock = threading.Lock()
        self._last_check: float | None = None
        self._snapshot: _Snapshot | None = None
        self._server: VectorStore | None = None
        self._server_version: IndexVersion | None = None
        self._resources = ExitStack()

    # --- what is served ---------------------------------------------------------------------------
    @property
    def local(self) -> bool:
        """True in local mode (serving a copy), False with a Qdrant server."""
        return not self.settings.qdrant_url

    @property
    def version(self) -> IndexVersion | None:
        """The collection behind the alias at the last check; None before the first or when missing."""
        if self.local:
            return self._snapshot.version if self._snapshot else None
        return self._server_version

    @property
    def collection(self) -> str | None:
        """The name of the collection the alias pointed at when last checked."""
        return self.version.collection if self.version else None

    # --- refresh ----------------------------------------------------------------------------------
    def refresh(self) -> bool:
        """Re-check the alias; True when a new collection or changed points were loaded.

        Never raises for a busy local folder: the copy keeps serving and ``last_error`` says why
        the check was skipped (``search`` raises it only when there is no copy at all).
        """
        with self._refresh_lock:
            return self._refresh_locked()

    def _refresh_locked(self) -> bool:
        self._last_check = time.monotonic()
        try:
            changed = self._reload_local() if self.local else self._check_server()
        except ServiceUnavailable as error:
            self.last_error = str(error)
            log.warning("index refresh skipped, serving %s: %s", self.version or "nothing yet", error)
            return False
        self.last_error = None
        return changed

    def _maybe_refresh(self) -> None:
        """The lazy refresh of ``search``: the first load, or a check once the interval passed."""
        if self._last_check is None:
            self.refresh()
            return
        stale = (
            self.refresh_interval is not None and time.monotonic() - self._last_check >= self.refresh_interval
        )
        # A search that finds another thread refreshing serves the current copy instead of waiting.
        if stale and self._refresh_lock.acquire(blocking=False):
            try:
                self._refresh_locked()
            finally:
                self._refresh_lock.release()

    def _reload_local(self) -> bool:
        from qdrant_client import QdrantClient, models

        current = self._snapshot.version if self._snapshot else None
        with open_qdrant(self.settings) as client:
            folder = VectorStore(client, chunks_alias=self.alias)
            target = folder.alias_target(self.alias)
            if target is None:
                if current is not None:
                    log.warning("alias %s is gone from Qdrant; serving the copy of %s", self.alias, current)
                return False
            ids = folder.point_ids(target)
            fingerprint = _fingerprint(ids)
            if current is not None and (current.collection, current.fingerprint) == (target, fingerprint):
                return False
            vectors_config = client.get_collection(target).config.params.vectors
            points = self._read_points(client, target)
        # The folder is closed again: build the copy without holding it.
        memory = QdrantClient(":memory:")
        memory.create_collection(target, vectors_config=vectors_config)
        for start in range(0, len(points), _SCROLL_PAGE):
            batch = points[start : start + _SCROLL_PAGE]
            memory.upsert(
                target,
                points=[models.PointStruct(id=p.id, vector=p.vector, payload=p.payload) for p in batch],
            )
        version = IndexVersion(
            collection=target,
            points=len(points),
            fingerprint=fingerprint,
            checked_at=utcnow(),
            source=f"copy of {self.settings.qdrant_local_path}",
        )
        # Searches read the collection by its own name in the copy; one assignment swaps copies.
        self._snapshot = _Snapshot(version, VectorStore(memory, chunks_alias=target))
        log.info("index loaded: %s (alias %s)", version, self.alias)
        return True

    @staticmethod
    def _read_points(client, collection: str) -> list:
        points: list = []
        offset = None
        while True:
            page, offset = client.scroll(
                collection, limit=_SCROLL_PAGE, offset=offset, with_payload=True, with_vectors=True
            )
            points += page
            if offset is None:
                return points

    def _server_store(self) -> VectorStore:
        if self._server is None:
            client = self._resources.enter_context(open_qdrant(self.settings))
            self._server = VectorStore(client, chunks_alias=self.alias)
        return self._server

    def _check_server(self) -> bool:
        from qdrant_client.http.exceptions import ResponseHandlingException

        store = self._server_store()
        try:
            target = store.alias_target(self.alias)
            points = store.count(target) if target else 0
        except ResponseHandlingException as error:
            raise self._unreachable(error) from error
        previous = self._server_version
        if target is None:
            self._server_version = None
            return previous is not None
        # A server resolves the alias per request; the version here only labels the request log.
        fingerprint = f"count:{points}"
        self._server_version = IndexVersion(
            collection=target,
            points=points,
            fingerprint=fingerprint,
            checked_at=utcnow(),
            source=str(self.settings.qdrant_url),
        )
        return previous is None or (previous.collection, previous.fingerprint) != (target, fingerprint)

    def _unreachable(self, error: Exception) -> ServiceUnavailable:
        return ServiceUnavailable(
            f"Qdrant server {self.settings.qdrant_url} is unreachable ({error}): start it or fix "
            "TWINOPS_QDRANT_URL",
            setting="TWINOPS_QDRANT_URL",
        )

    # --- search -----------------------------------------------------------------------------------
    def search(
        self,
        vector,
        *,
        limit: int,
        author_id: str | None = None,
        category: str | None = None,
        platform: str | None = None,
    ) -> list[ScoredChunk]:
        """The ``limit`` chunks nearest to ``vector`` (cosine), optionally filtered by payload."""
        self._maybe_refresh()
        filters = {"author_id": author_id, "category": category, "platform": platform}
        if not self.local:
            from qdrant_client.http.exceptions import ResponseHandlingException

            try:
                return self._server_store().search(vector, limit=limit, **filters)
            except ResponseHandlingException as error:
                raise self._unreachable(error) from error
        snapshot = self._snapshot
        if snapshot is None:
            if self.last_error:
                raise ServiceUnavailable(
                    f"no copy of the Qdrant index yet: {self.last_error}", setting="TWINOPS_QDRANT_URL"
                )
            raise NotFound(
                f"Qdrant at {self.settings.qdrant_local_path} has no {self.alias!r} collection yet: "
                "run `twinops features` first"
            )
        return snapshot.store.search(vector, limit=limit, **filters)

    def close(self) -> None:
        """Close the server connection (a local copy needs no closing)."""
        self._resources.close()
        self._server = None

    def __enter__(self) -> LiveIndex:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()
