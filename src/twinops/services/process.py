"""Process and port helpers shared by the embedded services."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import psutil


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    """Whether a server could not listen on ``port``: something answers on ``host``, or the port
    cannot be bound on every interface the way kserve's gRPC server binds it ([::], reusing the
    address). The bind catches what a connect misses: a connection's own local port, which free
    ports picked from the ephemeral range can collide with."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        if sock.connect_ex((host, port)) == 0:
            return True
    return not _bindable_everywhere(port)


def _bindable_everywhere(port: int) -> bool:
    for family, address in ((socket.AF_INET6, "::"), (socket.AF_INET, "0.0.0.0")):  # noqa: S104 (a probe, closed at once)
        try:
            sock = socket.socket(family, socket.SOCK_STREAM)
        except OSError:  # no IPv6 on this host: all IPv4 interfaces then
            continue
        with sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
            try:
                sock.bind((address, port))
            except OSError:
                return False
            return True
    return True


def pid_alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        process = psutil.Process(pid)
        return process.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def start_detached(
    command: Sequence[str], *, cwd: Path, log_file: Path, env: dict[str, str] | None = None
) -> int:
    """Start ``command`` in its own session (it outlives the CLI) with cwd ``cwd``; return its PID.

    Each server gets its own working folder: some wire servers write (and delete) files where
    they start, so they never start inside the project or TWINOPS_HOME itself.
    """
    cwd.mkdir(parents=True, exist_ok=True)
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with log_file.open("ab") as log:
        process = subprocess.Popen(  # noqa: S603 - the command is built by twinops, not a shell
            list(command),
            cwd=cwd,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, **(env or {})},
            start_new_session=True,
        )
    return process.pid


def group_members(pgid: int) -> list[int]:
    """Live processes of process group ``pgid`` (its leader, if alive, included)."""
    members = []
    for process in psutil.process_iter():
        try:
            if os.getpgid(process.pid) == pgid and process.status() != psutil.STATUS_ZOMBIE:
                members.append(process.pid)
        except (OSError, psutil.Error):
            continue
    return members


def stop_pid(pid: int, timeout: float = 15.0) -> None:
    """SIGTERM the process group started by ``start_detached``; SIGKILL what is left.

    The whole group, even when its leader is already gone: a server killed by PID (by hand, or
    the OOM killer) leaves its workers serving in the group, and they must not outlive ``down``.
    """
    if not group_members(pid):
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGTERM)
    if not wait_until(lambda: not group_members(pid), timeout=timeout, interval=0.1):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)
        wait_until(lambda: not group_members(pid), timeout=5, interval=0.1)
    # Reap it if it was our own child (tests start and stop in one process).
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def holders_of(workdir: Path) -> list[int]:
    """Live processes working in a server's folder (``start_detached`` starts each server, and so
    every worker it forks, with its folder as cwd) or naming it on their command line: the way to
    find a server left on a store after its record was lost or its leader died."""
    folder = str(workdir)
    found = []
    for process in psutil.process_iter():
        try:
            if process.status() == psutil.STATUS_ZOMBIE:
                continue
            cwd = process.cwd()
            works_there = cwd == folder or cwd.startswith(folder + os.sep)
            if works_there or any(folder in arg for arg in process.cmdline()):
                found.append(process.pid)
        except psutil.Error:
            continue
    return found


def wait_until(check: Callable[[], bool], *, timeout: float, interval: float = 0.2) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(interval)
    return check()


def tail(path: Path, lines: int = 5) -> str:
    if not path.exists():
        return ""
    return " | ".join(path.read_text(errors="replace").strip().splitlines()[-lines:])
