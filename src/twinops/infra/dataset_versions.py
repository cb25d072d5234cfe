"""DatasetVersion storage: every dataset's identity and lineage, in MongoDB."""

from __future__ import annotations

from pymongo import DESCENDING
from pymongo.database import Database

from twinops.domain.versions import DatasetKind, DatasetVersion
from twinops.errors import NotFound


class DatasetVersionRepository:
    collection_name = "dataset_versions"

    def __init__(self, db: Database) -> None:
        self._collection = db[self.collection_name]
        self._collection.create_index([("kind", 1), ("created_at", DESCENDING)])

    def save(self, version: DatasetVersion) -> bool:
        """Insert ``version`` unless one with the same id exists; return True when new."""
        document = version.model_dump(mode="python")
        document["_id"] = version.id
        result = self._collection.update_one({"_id": version.id}, {"$setOnInsert": document}, upsert=True)
        return result.upserted_id is not None

    def get(self, version_id: str) -> DatasetVersion:
        document = self._collection.find_one({"_id": version_id})
        if document is None:
            raise NotFound(
                f"dataset version {version_id!r} does not exist: list them with "
                "`twinops datasets show latest`"
            )
        return _to_model(document)

    def latest(self, kind: DatasetKind, name: str | None = None) -> DatasetVersion | None:
        query: dict = {"kind": kind.value}
        if name:
            query["name"] = name
        document = self._collection.find_one(query, sort=[("created_at", DESCENDING)])
        return _to_model(document) if document else None

    def lineage(self, version_id: str) -> list[DatasetVersion]:
        """``version_id`` and every ancestor reachable through ``parents``, nearest first."""
        seen: dict[str, DatasetVersion] = {}
        frontier = [version_id]
        while frontier:
            current = frontier.pop(0)
            if current in seen:
                continue
            document = self._collection.find_one({"_id": current})
            if document is None:
                continue
            version = _to_model(document)
            seen[current] = version
            frontier.extend(version.parents)
        if version_id not in seen:
            raise NotFound(f"dataset version {version_id!r} does not exist")
        return list(seen.values())


def _to_model(document: dict) -> DatasetVersion:
    document = {k: v for k, v in document.items() if k not in ("_id", "id")}
    document["parents"] = tuple(document.get("parents", ()))
    return DatasetVersion.model_validate(document)
