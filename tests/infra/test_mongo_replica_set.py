"""The prod replica set's Job converges from any point: killed after each command, run again, it
ends with every member in the set, each added once.

No mongod runs here (SecantusDB, the embedded server, has no ``replSetInitiate``), so the commands
go to a stand-in member 0 that refuses what mongod refuses (src/mongo/db/repl): a second initiate
(AlreadyInitialized), an initiate listing a member that has data (every member but 0 has the root
user the image's entrypoint created), a reconfig that is not from the primary, that does not raise
the version, that adds two voting members at once, that names an unreachable member, or that
follows a config not committed yet. ``test_the_stand_in_refuses_...`` checks those refusals bite.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest
from tests.support.one_line import one_line_error

from twinops.errors import ConfigError, ServiceUnavailable
from twinops.infra.mongo_replica_set import (
    ALREADY_INITIALIZED,
    NOT_YET_INITIALIZED,
    CommandRefused,
    ReplicaSetPlan,
    converge,
    main,
)

PLAN = ReplicaSetPlan.for_statefulset("rs0", service="mongodb", members=3, namespace="twinops")
HOSTS = PLAN.hosts


class MemberZero:
    """Member 0 of a StatefulSet of ``mongod --replSet rs0`` pods, as its admin commands see it."""

    def __init__(self, *, reachable: set[str] | None = None, election_calls: int = 2, commit_calls: int = 2):
        self.host = HOSTS[0]
        self.with_data = set(HOSTS[1:])  # the entrypoint's root user on every other member
        self.reachable = set(HOSTS) if reachable is None else reachable
        self.config: dict[str, Any] | None = None
        self.not_primary_for = 0  # refused reconfigs until member 0 wins its election
        self.uncommitted_for = 0  # refused reconfigs until the last config is majority-committed
        self.election_calls = election_calls
        self.commit_calls = commit_calls
        self.writes: list[str] = []

    def __call__(self, command: dict[str, Any]) -> dict[str, Any]:
        name = next(iter(command))
        body = command[name]
        if name == "replSetGetConfig":
            if self.config is None:
                raise CommandRefused(NOT_YET_INITIALIZED, "no replset config has been received")
            return {"config": copy.deepcopy(self.config), "ok": 1.0}
        if name == "replSetInitiate":
            return self._initiate(body)
        if name == "replSetReconfig":
            return self._reconfig(body)
        raise CommandRefused(59, f"no such command: '{name}'")

    def _check_members(self, members: list[dict]) -> None:
        ids = [member["_id"] for member in members]
        hosts = [member["host"] for member in members]
        if len(set(ids)) != len(ids) or len(set(hosts)) != len(hosts):
            raise CommandRefused(93, "Found two member configurations with same _id or host")
        if hosts.count(self.host) != 1:
            raise CommandRefused(93, "No host described in new configuration maps to this node")
        for host in hosts:
            if host not in self.reachable:
                raise CommandRefused(74, f"Quorum check failed: not enough voting nodes responded: {host}")

    def _initiate(self, body: dict) -> dict:
        if self.config is not None:
            raise CommandRefused(ALREADY_INITIALIZED, "already initialized")
        self._check_members(body["members"])
        for member in body["members"]:
            if member["host"] in self.with_data:
                raise CommandRefused(93, f"'{member['host']}' has data already, cannot initiate set.")
        self.config = {**copy.deepcopy(body), "version": 1, "term": 0}
        self.not_primary_for = self.election_calls
        self.writes.append("initiate")
        return {"ok": 1.0}

    def _reconfig(self, body: dict) -> dict:
        if self.config is None:
            raise CommandRefused(NOT_YET_INITIALIZED, "no replset config has been received")
        if self.not_primary_for:
            self.not_primary_for -= 1
            raise CommandRefused(10107, "replSetReconfig should only be run on a writable PRIMARY")
        if self.uncommitted_for:
            self.uncommitted_for -= 1
            raise CommandRefused(308, "Last committed replica set config is not yet committed")
        if body["_id"] != self.config["_id"]:
            raise CommandRefused(103, "New and old configurations differ in replica set name")
        if body["version"] <= self.config["version"]:
            raise CommandRefused(103, "New replica set config version must be greater than the current one")
        self._check_members(body["members"])
        old = {member["host"] for member in self.config["members"]}
        new = {member["host"] for member in body["members"]}
        if len(old ^ new) > 1:
            raise CommandRefused(103, "Only one voting member can be added or removed at a time")
        self.config = copy.deepcopy(body)
        self.uncommitted_for = self.commit_calls
        self.writes.append(f"add {sorted(new - old)}")
        return {"ok": 1.0}


class Killed(BaseException):
    """The Job's pod dies (not an Exception: nothing in the code may catch it)."""


def _dies_at(member: MemberZero, call: int, *, after: bool):
    """``member``'s commands, the process dying at the ``call``-th: before it reaches mongod, or
    after mongod applied it and before the answer is read."""
    count = 0

    def run(command: dict[str, Any]) -> dict[str, Any]:
        nonlocal count
        count += 1
        if count == call and not after:
            raise Killed
        try:
            return member(command)
        finally:
            if count == call:
                raise Killed  # the process dies whatever mongod answered

    return run


def _converge(run) -> dict:
    return converge(run, PLAN, sleep=lambda _: None)


def _is_converged(member: MemberZero) -> None:
    assert member.config is not None
    assert [m["host"] for m in member.config["members"]] == list(HOSTS)
    assert [m["_id"] for m in member.config["members"]] == [0, 1, 2]
    assert member.writes == ["initiate", f"add ['{HOSTS[1]}']", f"add ['{HOSTS[2]}']"]


def test_from_fresh_members_it_initiates_and_adds_the_others_one_by_one() -> None:
    member = MemberZero()
    config = _converge(member)
    _is_converged(member)
    assert config == member.config and config["version"] == 3


def test_the_stand_in_refuses_what_mongod_refuses() -> None:
    """What makes the one-by-one path necessary, and what the retries wait out."""
    member = MemberZero()
    everyone = [{"_id": i, "host": host} for i, host in enumerate(HOSTS)]
    with pytest.raises(CommandRefused, match="has data already"):
        member({"replSetInitiate": {"_id": "rs0", "members": everyone}})
    member({"replSetInitiate": {"_id": "rs0", "members": everyone[:1]}})
    with pytest.raises(CommandRefused) as again:
        member({"replSetInitiate": {"_id": "rs0", "members": everyone[:1]}})
    assert again.value.code == ALREADY_INITIALIZED
    two_at_once = {"_id": "rs0", "version": 2, "members": everyone}
    refusals = []
    for _ in range(4):
        with pytest.raises(CommandRefused) as refused:
            member({"replSetReconfig": two_at_once})
        refusals.append(refused.value.code)
    assert refusals == [10107, 10107, 103, 103]  # not primary yet, then two voting members at once
    member({"replSetReconfig": {**two_at_once, "members": everyone[:2]}})
    with pytest.raises(CommandRefused) as uncommitted:
        member({"replSetReconfig": {**two_at_once, "version": 3}})
    assert uncommitted.value.code == 308


@pytest.mark.parametrize("after", [False, True], ids=["before-the-command", "after-the-command"])
def test_killed_at_any_command_a_rerun_converges(after: bool) -> None:
    calls = 0

    def counting(command: dict[str, Any]) -> dict[str, Any]:
        nonlocal calls
        calls += 1
        return reference(command)

    reference = MemberZero()
    _converge(counting)
    assert calls > 6
    for call in range(1, calls + 1):
        member = MemberZero()
        with pytest.raises(Killed):
            _converge(_dies_at(member, call, after=after))
        _converge(member)
        _is_converged(member)


def test_on_a_converged_set_it_writes_nothing() -> None:
    member = MemberZero()
    _converge(member)
    writes = list(member.writes)
    _converge(member)
    assert member.writes == writes


def test_a_member_that_never_answers_fails_after_the_deadline_naming_it() -> None:
    member = MemberZero(reachable=set(HOSTS[:2]))
    now = [0.0]

    def sleep(seconds: float) -> None:
        now[0] += seconds

    with pytest.raises(ServiceUnavailable, match=f"add {HOSTS[2]}.*NodeNotFound"):
        converge(member, PLAN, deadline_s=60, sleep=sleep, clock=lambda: now[0])
    assert [m["host"] for m in member.config["members"]] == list(HOSTS[:2])


def test_a_set_of_another_name_is_refused_before_any_write() -> None:
    member = MemberZero()
    converge(member, ReplicaSetPlan("other", HOSTS[:1]), sleep=lambda _: None)
    writes = list(member.writes)
    with pytest.raises(ConfigError, match="belongs to replica set 'other', not 'rs0'"):
        _converge(member)
    assert member.writes == writes


def test_without_the_root_credentials_the_job_fails_in_one_line(monkeypatch, capsys) -> None:
    monkeypatch.delenv("MONGODB_ROOT_USERNAME", raising=False)
    monkeypatch.delenv("MONGODB_ROOT_PASSWORD", raising=False)
    one_line_error(main, ["--members", "3"], capsys, "MONGODB_ROOT_USERNAME", "mongodb-root-password")


def test_the_members_are_the_statefulsets_pods_behind_its_headless_service() -> None:
    assert HOSTS == (
        "mongodb-0.mongodb.twinops.svc:27017",
        "mongodb-1.mongodb.twinops.svc:27017",
        "mongodb-2.mongodb.twinops.svc:27017",
    )
