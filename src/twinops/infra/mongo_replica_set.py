"""The prod warehouse as a MongoDB replica set: initiate it and add its members, idempotently.

``kustomize/overlays/prod`` runs MongoDB as a StatefulSet of ``--replSet`` members (change streams
need a replica set) and this module as the Job ``mongodb-replica-set``. The official image's
entrypoint creates the root user on every member before the first start, so no member but the
first is empty, and ``replSetInitiate`` refuses a config that lists a member with data. The set is
therefore initiated with member 0 alone, and the others are added one ``replSetReconfig`` at a time
(mongod refuses to add two voting members at once); each joining member's initial sync replaces its
own databases with the primary's, the root user included.

Every step reads the set's config first and does only what is missing, so a Job killed between
any two commands converges when it runs again (``tests/infra/test_mongo_replica_set.py`` kills it
at each command). Refusals that pass by themselves (no primary yet, the previous config not
committed, a member not reachable yet) are retried, each with a log line, until ``deadline_s``.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from twinops.errors import ConfigError, ServiceUnavailable

logger = logging.getLogger(__name__)

# mongod's error codes (src/mongo/base/error_codes.yml) this module acts on.
NOT_YET_INITIALIZED = 94
ALREADY_INITIALIZED = 23
# Refusals that pass by themselves: retried until the deadline.
TRANSIENT_CODES = {
    74: "a member does not answer yet (NodeNotFound)",
    103: "the config changed meanwhile (NewReplicaSetConfigurationIncompatible)",
    109: "another reconfig is in progress (ConfigurationInProgress)",
    189: "the primary stepped down (PrimarySteppedDown)",
    308: "the previous config is not committed yet (CurrentConfigNotCommittedYet)",
    10107: "member 0 is not primary yet (NotWritablePrimary)",
    11602: "a replica set state change interrupted it (InterruptedDueToReplStateChange)",
    13435: "member 0 is not primary yet (NotPrimaryNoSecondaryOk)",
}

AdminCommand = Callable[[dict[str, Any]], dict[str, Any]]


class CommandRefused(Exception):
    """mongod refused a command (pymongo's ``OperationFailure``, or the connection dropped)."""

    def __init__(self, code: int | None, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class ReplicaSetPlan:
    """The set to converge to: its name and its members' host:port, member 0 first."""

    name: str
    hosts: tuple[str, ...]

    @classmethod
    def for_statefulset(cls, name: str, *, service: str, members: int, namespace: str, port: int = 27017):
        """The members of StatefulSet ``service`` behind its headless Service of the same name."""
        if members < 1:
            raise ConfigError(f"--members {members}: a replica set needs at least one member")
        suffix = f".{service}.{namespace}.svc" if namespace else f".{service}"
        return cls(name, tuple(f"{service}-{index}{suffix}:{port}" for index in range(members)))


def current_config(run: AdminCommand) -> dict[str, Any] | None:
    """The set's config as member 0 holds it; None before ``replSetInitiate``."""
    try:
        return run({"replSetGetConfig": 1})["config"]
    except CommandRefused as refused:
        if refused.code == NOT_YET_INITIALIZED:
            return None
        raise


def _retrying(what: str, step: Callable[[], Any], *, deadline: float, sleep, clock) -> Any:
    """``step()``, again after a pause while mongod refuses it for a reason that passes by itself."""
    while True:
        try:
            return step()
        except CommandRefused as refused:
            reason = TRANSIENT_CODES.get(refused.code) if refused.code is not None else "no connection"
            if reason is None:
                raise
            if clock() >= deadline:
                raise ServiceUnavailable(
                    f"replica set: {what} still refused after the deadline ({reason}: {refused}): "
                    "check that every member's pod is ready and reaches the others on 27017"
                ) from refused
            logger.info("replica set: waiting to %s: %s", what, reason)
            sleep(2.0)


def converge(
    run: AdminCommand,
    plan: ReplicaSetPlan,
    *,
    deadline_s: float = 600.0,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> dict[str, Any]:
    """Bring the set that ``run`` (admin commands on member 0) reaches to ``plan``; return its config."""
    deadline = clock() + deadline_s
    wait = {"deadline": deadline, "sleep": sleep, "clock": clock}
    config = _retrying(f"reach {plan.hosts[0]}", lambda: current_config(run), **wait)
    if config is None:
        logger.info("replica set: initiating %s with %s alone", plan.name, plan.hosts[0])
        command = {"replSetInitiate": {"_id": plan.name, "members": [{"_id": 0, "host": plan.hosts[0]}]}}

        def initiate() -> None:
            try:
                run(command)
            except CommandRefused as refused:
                if refused.code != ALREADY_INITIALIZED:  # a run killed after initiating got there first
                    raise

        _retrying("initiate", initiate, **wait)
        config = _retrying("read the new config", lambda: current_config(run), **wait)
        assert config is not None, "replSetInitiate succeeded but member 0 holds no config"
    if config["_id"] != plan.name:
        raise ConfigError(
            f"member 0 belongs to replica set {config['_id']!r}, not {plan.name!r}: pass --replica-set "
            f"{config['_id']} (the name mongod runs with, --replSet)"
        )
    for host in plan.hosts:
        if host in {member["host"] for member in config["members"]}:
            continue

        def add(host: str = host) -> dict[str, Any]:
            latest = current_config(run) or {}
            members = latest.get("members", [])
            if host in {member["host"] for member in members}:  # added by the try that timed out
                return latest
            member_id = max((member["_id"] for member in members), default=-1) + 1
            joined = [*members, {"_id": member_id, "host": host}]
            run({"replSetReconfig": {**latest, "version": latest["version"] + 1, "members": joined}})
            return current_config(run) or latest

        logger.info("replica set: adding %s", host)
        config = _retrying(f"add {host}", add, **wait)
    logger.info(
        "replica set %s: %d members (%s)", plan.name, len(config["members"]),
        ", ".join(member["host"] for member in config["members"]),
    )  # fmt: skip
    return config


def pymongo_admin(host: str, *, username: str, password: str, timeout_ms: int = 10000) -> AdminCommand:
    """Admin commands on one member, directly (no replica-set discovery), as the root user."""
    from pymongo import MongoClient
    from pymongo.errors import ConnectionFailure, OperationFailure

    client: MongoClient = MongoClient(
        f"mongodb://{host}/",
        username=username,
        password=password,
        authSource="admin",
        directConnection=True,
        serverSelectionTimeoutMS=timeout_ms,
    )

    def run(command: dict[str, Any]) -> dict[str, Any]:
        try:
            return client.admin.command(command)
        except OperationFailure as error:
            raise CommandRefused(error.code, str(error.details.get("errmsg", error))) from error
        except ConnectionFailure as error:
            raise CommandRefused(None, str(error)) from error

    return run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m twinops.infra.mongo_replica_set",
        description=__doc__.split("\n")[0],
        epilog="The root user's credentials are read from MONGODB_ROOT_USERNAME and MONGODB_ROOT_PASSWORD.",
    )
    parser.add_argument("--replica-set", default="rs0", help="The set's name (mongod's --replSet).")
    parser.add_argument("--service", default="mongodb", help="The StatefulSet and its headless Service.")
    parser.add_argument("--members", type=int, default=3, help="The StatefulSet's replicas.")
    parser.add_argument(
        "--namespace", default=os.environ.get("POD_NAMESPACE", ""),
        help="The members' namespace (default: POD_NAMESPACE): <service>-<i>.<service>.<namespace>.svc.",
    )  # fmt: skip
    parser.add_argument("--deadline", type=float, default=600.0, help="Seconds to wait for the members.")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    from twinops.errors import TwinopsError

    try:
        username = os.environ.get("MONGODB_ROOT_USERNAME") or ""
        password = os.environ.get("MONGODB_ROOT_PASSWORD") or ""
        if not (username and password):
            raise ConfigError(
                "MONGODB_ROOT_USERNAME and MONGODB_ROOT_PASSWORD are not set: pass the Secret's "
                "mongodb-root-username and mongodb-root-password"
            )
        plan = ReplicaSetPlan.for_statefulset(
            args.replica_set, service=args.service, members=args.members, namespace=args.namespace
        )
        logger.info("replica set: connecting to %s", plan.hosts[0])
        member_zero = pymongo_admin(plan.hosts[0], username=username, password=password)
        converge(member_zero, plan, deadline_s=args.deadline)
    except TwinopsError as error:
        print(f"error: {error}", file=sys.stderr)
        return error.exit_code
    except CommandRefused as refused:
        print(f"error: mongod refused it (code {refused.code}): {refused}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
