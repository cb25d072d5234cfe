"""The MongoDB warehouse connection (pymongo, embedded wire server or any TWINOPS_MONGODB_URI)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from pymongo import MongoClient
from pymongo.database import Database
from pymongo.errors import ConnectionFailure, PyMongoError
from pymongo.uri_parser import parse_uri

from twinops.errors import ServiceUnavailable
from twinops.infra.endpoints import mongodb_uri
from twinops.settings import Settings


def database_name(uri: str, settings: Settings) -> str:
    """The database the URI names, else ``TWINOPS_MONGODB_DATABASE`` (default ``twinops``)."""
    return parse_uri(uri).get("database") or settings.mongodb_database


def connect(settings: Settings, *, timeout_ms: int = 5000) -> Database:
    """A ``Database`` handle on the warehouse; fails with one line when it is unreachable."""
    uri = mongodb_uri(settings)
    # journal=True: a write is acknowledged once it is in the server's journal on disk (j:true). With
    # the default (j:false) the embedded server acknowledged writes still in its log buffer, and a
    # SIGKILL right after lost them (the ETL probe: documents visible, then gone).
    client: MongoClient = MongoClient(uri, serverSelectionTimeoutMS=timeout_ms, tz_aware=True, journal=True)
    try:
        client.admin.command("ping")
    except PyMongoError as error:
        client.close()
        raise unreachable(error, f"MongoDB at {uri}") from error
    return client[database_name(uri, settings)]


def unreachable(error: PyMongoError, what: str = "MongoDB") -> ServiceUnavailable:
    """The one line for a warehouse that does not answer (``what``: which one, where)."""
    return ServiceUnavailable(
        f"{what} is unreachable ({type(error).__name__}): run `twinops services up` "
        "or fix TWINOPS_MONGODB_URI",
        setting="TWINOPS_MONGODB_URI",
    )


@contextmanager
def warehouse_errors(what: str = "the warehouse") -> Iterator[None]:
    """A warehouse that stops answering mid-step ends the step in one line (``unreachable``), not in
    pymongo's traceback after its server-selection timeout; other errors pass unchanged."""
    try:
        yield
    except ConnectionFailure as error:
        raise unreachable(error, what) from error
