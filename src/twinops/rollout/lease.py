"""One driver per rollout: a ``coordination.k8s.io/v1`` Lease on a cluster, a file lock locally.

Two controllers driving one canary (the KFP rollout step and the ``twinops-rollout`` Deployment)
would each step it up once per interval. The controller holds a lease while it drives a rollout:
``KubeLease`` is the Lease ``twinops-rollout-<isvc>`` in the InferenceService's namespace, taken
and renewed with optimistic concurrency (every write carries the ``resourceVersion`` it read, so
of two controllers racing for it exactly one wins; the other gets a 409 and reports who holds it).
A lease whose holder stopped renewing expires after ``duration_seconds`` and can be taken over, so
a crashed controller's successor waits at most that long. ``FileLease`` is the local equivalent
(``fcntl.flock`` beside the rollout's state file), released by the kernel when its process dies.
"""

from __future__ import annotations

import fcntl
import os
import socket
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, Any

from twinops.errors import ConfigError, ServiceUnavailable

LEASE_PREFIX = "twinops-rollout-"
DEFAULT_LEASE_SECONDS = 60


class LeaseHeld(ConfigError):
    """Another controller drives this rollout."""


class StaleRead(ServiceUnavailable):
    """The target changed since the controller read it (a 409): read it again and re-decide."""


def holder_identity() -> str:
    """The pod's name on a cluster (``POD_NAME``, else the hostname), with the process id."""
    return f"{os.environ.get('POD_NAME') or socket.gethostname()}-{os.getpid()}"


def _utcnow() -> datetime:
    return datetime.now(UTC)


class KubeLease:
    """The Lease ``twinops-rollout-<name>``: ``acquire`` (or raise ``LeaseHeld``), ``renew``, ``release``."""

    def __init__(
        self,
        name: str,
        namespace: str,
        *,
        api: Any,
        holder: str | None = None,
        duration_seconds: int = DEFAULT_LEASE_SECONDS,
        clock: Callable[[], datetime] = _utcnow,
    ) -> None:
        self.lease_name = f"{LEASE_PREFIX}{name}"[:253]
        self.namespace = namespace
        self.api = api
        self.holder = holder or holder_identity()
        self.duration_seconds = duration_seconds
        self.clock = clock
        self._resource_version: str | None = None
        self._acquired: datetime | None = None
        self._transitions = 0

    @property
    def renew_every(self) -> float:
        """Renew well before expiry: a third of the duration, as client-go's leader election does."""
        return self.duration_seconds / 3

    def _call(self, what: str, function: Callable[..., Any], *args: Any) -> Any:
        from kubernetes.client.exceptions import ApiException
        from urllib3.exceptions import HTTPError

        try:
            return function(*args)
        except ApiException as error:
            if error.status in (401, 403):
                raise ConfigError(
                    f"the Kubernetes API refused to {what} Lease {self.namespace}/{self.lease_name} "
                    f"({error.status}): bind the service account to the twinops-rollout Role (leases)"
                ) from error
            raise
        except HTTPError as error:
            raise ServiceUnavailable(
                f"the Kubernetes API is unreachable ({type(error).__name__}) while taking the rollout lease"
            ) from error

    def _body(self, *, transitions: int, acquired: datetime | None) -> dict[str, Any]:
        stamp = self.clock()
        acquired = acquired or stamp
        metadata: dict[str, Any] = {"name": self.lease_name, "namespace": self.namespace}
        if self._resource_version is not None:
            metadata["resourceVersion"] = self._resource_version
        return {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": metadata,
            "spec": {
                "holderIdentity": self.holder,
                "leaseDurationSeconds": self.duration_seconds,
                "acquireTime": _micro_time(acquired),
                "renewTime": _micro_time(stamp),
                "leaseTransitions": transitions,
            },
        }

    def _read(self) -> Any | None:
        from kubernetes.client.exceptions import ApiException

        try:
            return self._call("read", self.api.read_namespaced_lease, self.lease_name, self.namespace)
        except ApiException as error:
            if error.status == 404:
                return None
            raise

    def acquire(self) -> None:
        """Take the lease, or raise ``LeaseHeld`` naming its live holder."""
        from kubernetes.client.exceptions import ApiException

        current = self._read()
        try:
            if current is None:
                self._resource_version = None
                self._acquired, self._transitions = self.clock(), 0
                created = self._call(
                    "create",
                    self.api.create_namespaced_lease,
                    self.namespace,
                    self._body(transitions=0, acquired=self._acquired),
                )
                self._resource_version = created.metadata.resource_version
                return
            spec = current.spec
            if spec.holder_identity not in (None, "", self.holder) and not self._expired(spec):
                raise self._held(spec)
            transitions = (spec.lease_transitions or 0) + (spec.holder_identity != self.holder)
            self._resource_version = current.metadata.resource_version
            acquired = spec.acquire_time if spec.holder_identity == self.holder else self.clock()
            self._acquired, self._transitions = acquired, transitions
            replaced = self._call(
                "update",
                self.api.replace_namespaced_lease,
                self.lease_name,
                self.namespace,
                self._body(transitions=transitions, acquired=acquired),
            )
            self._resource_version = replaced.metadata.resource_version
        except ApiException as error:
            if error.status == 409:  # another controller wrote it between our read and our write
                latest = self._read()
                raise self._held(latest.spec if latest is not None else None) from error
            raise

    def renew(self) -> None:
        """Extend the lease with one write based on the version this controller last wrote; a 409
        means another controller wrote it since (it took the lease over): ``LeaseHeld``."""
        from kubernetes.client.exceptions import ApiException

        try:
            replaced = self._call(
                "renew",
                self.api.replace_namespaced_lease,
                self.lease_name,
                self.namespace,
                self._body(transitions=self._transitions, acquired=self._acquired),
            )
        except ApiException as error:
            if error.status in (404, 409):
                latest = self._read()
                raise self._held(latest.spec if latest is not None else None, lost=True) from error
            raise
        self._resource_version = replaced.metadata.resource_version

    def release(self) -> None:
        """Give the lease up (an empty holder), so the next controller need not wait for expiry."""
        from kubernetes.client.exceptions import ApiException

        current = self._read()
        if current is None or current.spec.holder_identity != self.holder:
            return
        self._resource_version = current.metadata.resource_version
        body = self._body(transitions=current.spec.lease_transitions or 0, acquired=current.spec.acquire_time)
        body["spec"]["holderIdentity"] = None
        try:
            self._call("release", self.api.replace_namespaced_lease, self.lease_name, self.namespace, body)
        except ApiException as error:
            if error.status != 409:  # taken over meanwhile: nothing of ours to release
                raise

    def _expired(self, spec: Any) -> bool:
        renewed = spec.renew_time or spec.acquire_time
        if renewed is None:
            return True
        duration = spec.lease_duration_seconds or self.duration_seconds
        return self.clock() > renewed + timedelta(seconds=duration)

    def _held(self, spec: Any | None, *, lost: bool = False) -> LeaseHeld:
        who = getattr(spec, "holder_identity", None) or "another controller"
        head = "lost the rollout lease" if lost else "another controller drives this rollout"
        until = ""
        renewed = getattr(spec, "renew_time", None)
        if renewed is not None:
            expiry = renewed + timedelta(seconds=spec.lease_duration_seconds or self.duration_seconds)
            until = f" until at least {expiry:%H:%M:%S} UTC"
        return LeaseHeld(
            f"{head}: Lease {self.namespace}/{self.lease_name} is held by {who}{until}; "
            "let it finish, or see `twinops rollout status`"
        )

    def __enter__(self) -> KubeLease:
        self.acquire()
        return self

    def __exit__(self, *exc_info: object) -> None:
        # A crashed process cannot release: the lease then expires after duration_seconds.
        self.release()


class FileLease:
    """An exclusive ``flock`` on ``path``: the local router's one-driver lock."""

    renew_every = float("inf")

    def __init__(self, path: Path) -> None:
        self.path = path
        self._handle: IO[str] | None = None

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle = self.path.open("a+", encoding="utf-8")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as error:
            handle.seek(0)
            who = handle.read().strip() or "another process"
            handle.close()
            raise LeaseHeld(
                f"another controller drives this rollout ({who} holds {self.path}): let it finish, or "
                "see `twinops rollout status`"
            ) from error
        handle.seek(0)
        handle.truncate()
        handle.write(holder_identity())
        handle.flush()
        self._handle = handle

    def renew(self) -> None:
        """Nothing to renew: the lock lasts as long as the process."""

    def release(self) -> None:
        if self._handle is not None:
            fcntl.flock(self._handle, fcntl.LOCK_UN)
            self._handle.close()
            self._handle = None

    def __enter__(self) -> FileLease:
        self.acquire()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.release()


def _micro_time(value: datetime) -> str:
    """Kubernetes' MicroTime: RFC 3339 with microseconds, in UTC."""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
