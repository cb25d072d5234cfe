"""The servers on one machine: each runtime as its own process on 127.0.0.1, as in a cluster.

``twinops serve`` and ``twinops run`` start them through ``LocalServers``: every server is the same
``python -m twinops.serving.<role>`` a pod runs, with its log under ``TWINOPS_HOME/logs/serve``.
``all`` is the LLM, the reranker (only while ``twin-reranker`` has a champion: RAG ranks by cosine
otherwise) and RAG wired to both over HTTP. ``start_llm_canary`` adds a second LLM server and the
weighted router (``twinops.serving.router``) in front of both: the local canary for ``twinops rollout``.
With a canary, RAG calls the LLM through the router, so the canary's share of RAG traffic is the
router's weight (as on a cluster, where RAG calls the InferenceService's own route).

``supervise`` keeps them up as a Deployment would: a server that dies is started again with the
same command and ports, after a delay that doubles with each restart in a row (``RESTART_DELAY``
up to ``MAX_RESTART_DELAY``, back to the first once it has stayed up ``STABLE_SECONDS``), and the
others are left running. Meanwhile RAG answers 503 in the OpenAI error shape for what needs the
dead server, as it does when the LLM is a separate process.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx
from pydantic import BaseModel

from twinops.errors import ConfigError, ServiceUnavailable
from twinops.services.process import pid_alive, port_in_use, start_detached, stop_pid, tail, wait_until
from twinops.settings import Settings

ROLES = ("llm", "reranker", "embedder", "rag")
MODEL_NAMES = {"llm": "twin-llm", "reranker": "twin-reranker", "embedder": "twin-embedder", "rag": "twin-rag"}
DEFAULT_PORTS = {"llm": 8180, "reranker": 8280, "embedder": 8380, "rag": 8480}  # gRPC on port + 1
# The local canary: a second LLM server and the weighted router in front of both.
CANARY_LLM_PORT = 8184
ROUTER_PORT = 8188
HOST = "127.0.0.1"
# Loading an LLM on two busy cores takes a while; a server that is still loading is not failing.
READY_TIMEOUT = 300.0
# Supervision (see the module docstring): seconds before the first restart, the most, and how long
# a server must stay up before its next death counts as a first again.
RESTART_DELAY = 1.0
MAX_RESTART_DELAY = 60.0
STABLE_SECONDS = 120.0


class LocalServer(BaseModel):
    role: str
    model_name: str
    pid: int
    http_port: int
    grpc_port: int
    log_file: str
    command: list[str] = []  # what started it, to start it again
    restarts: int = 0

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.http_port}"

    @property
    def openai_url(self) -> str:
        return f"{self.url}/openai/v1"


def _ready(server: LocalServer) -> bool:
    try:
        return httpx.get(f"{server.url}/v2/models/{server.model_name}/ready", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


class LocalServers:
    """Start, wait for and stop local servers; a context manager stops what it started."""

    def __init__(self, settings: Settings, *, on_event: Callable[[str], None] | None = None):
        self.settings = settings
        self.servers: dict[str, LocalServer] = {}
        self.on_event = on_event or (lambda _message: None)

    @property
    def log_dir(self) -> Path:
        return self.settings.home / "logs" / "serve"

    def _env(self) -> dict[str, str]:
        # The servers run in the home folder, where a relative default home would point one level down.
        return {"TWINOPS_HOME": str(self.settings.home)}

    def start(
        self,
        role: str,
        *,
        port: int | None = None,
        args: Sequence[str] = (),
        label: str | None = None,
        model_name: str | None = None,
    ) -> LocalServer:
        """Start one server; ``label`` (default: the role) names it and its log, for two of a role.

        ``model_name``: the model its readiness is asked of, when not the role's (an LLM server of
        many twins is ready when its base is)."""
        label = label or role
        if role not in ROLES:
            raise ConfigError(f"unknown server {role!r}: choose one of {', '.join(ROLES)}")
        http_port = port or DEFAULT_PORTS[role]
        for taken in (http_port, http_port + 1):
            if port_in_use(taken):
                raise ConfigError(
                    f"port {taken} on {HOST} is in use (is a {role} server already running?): "
                    "stop it or pass --port"
                )
        log_file = self.log_dir / f"{label}.log"
        log_file.parent.mkdir(parents=True, exist_ok=True)
        log_file.write_text("")
        command = [
            sys.executable,
            "-m",
            f"twinops.serving.{role}",
            "--model_name",
            MODEL_NAMES[role],
            "--host",
            HOST,
            "--http_port",
            str(http_port),
            "--grpc_port",
            str(http_port + 1),
            *args,
        ]
        pid = start_detached(command, cwd=self.settings.home, log_file=log_file, env=self._env())
        server = LocalServer(
            role=role,
            model_name=model_name or MODEL_NAMES[role],
            pid=pid,
            http_port=http_port,
            grpc_port=http_port + 1,
            log_file=str(log_file),
            command=command,
        )
        self.servers[label] = server
        self.on_event(f"starting {label} ({server.model_name}) on {server.url}")
        return server

    def start_llm_canary(
        self,
        *,
        llm_args: Sequence[str] = (),
        canary_dir: Path,
        canary_percent: int = 0,
        ports: tuple[int, int, int] = (DEFAULT_PORTS["llm"], CANARY_LLM_PORT, ROUTER_PORT),
    ) -> LocalServer:
        """The LLM, a canary LLM serving ``canary_dir``, and the weighted router in front (returned).

        ``ports``: the stable's, the canary's (gRPC on each + 1) and the router's HTTP ports.
        """
        stable_port, canary_port, router_port = ports
        if not 0 <= canary_percent <= 100:
            raise ConfigError(f"--canary-percent {canary_percent} is not a traffic percent in 0..100")
        stable = self.start("llm", port=stable_port, args=llm_args)
        canary = self.start(
            "llm", port=canary_port, args=["--model_dir", str(canary_dir)], label="llm-canary"
        )
        for server in (stable, canary):
            self.wait_ready(server)
        if port_in_use(router_port):
            raise ConfigError(
                f"port {router_port} on {HOST} is in use (is a router already running?): stop it"
            )
        log_file = self.log_dir / "router.log"
        command = [
            sys.executable,
            "-m",
            "twinops.serving.router",
            "--stable",
            stable.url,
            "--canary",
            canary.url,
            "--canary_percent",
            str(canary_percent),
            "--host",
            HOST,
            "--http_port",
            str(router_port),
        ]
        log_file.parent.mkdir(parents=True, exist_ok=True)
        log_file.write_text("")
        pid = start_detached(command, cwd=self.settings.home, log_file=log_file, env=self._env())
        router = LocalServer(
            role="router",
            model_name=MODEL_NAMES["llm"],
            pid=pid,
            http_port=router_port,
            grpc_port=router_port,  # the router forwards HTTP only
            log_file=str(log_file),
            command=command,
        )
        self.servers["router"] = router
        self.wait_ready(router)  # its /v2/.../ready is the stable server's, through the router
        return router

    def wait_ready(self, server: LocalServer, timeout: float = READY_TIMEOUT) -> None:
        def ready_or_dead() -> bool:
            return _ready(server) or not pid_alive(server.pid)

        wait_until(ready_or_dead, timeout=timeout, interval=0.5)
        if not _ready(server):
            last = tail(Path(server.log_file), 3)
            state = "exited" if not pid_alive(server.pid) else f"is not ready after {timeout:.0f}s"
            raise ServiceUnavailable(f"the {server.role} server {state}: {last} (log: {server.log_file})")
        self.on_event(f"{server.role} ready: {server.url}")

    def start_all(
        self,
        *,
        llm_args: Sequence[str] = (),
        reranker_args: Sequence[str] | None = None,
        rag_args: Sequence[str] = (),
        canary_dir: Path | None = None,
        canary_percent: int = 0,
    ) -> dict[str, LocalServer]:
        """LLM, reranker (when ``reranker_args`` is not None) and RAG wired to them; with
        ``canary_dir``, a canary LLM and the router, which RAG then calls."""
        reranker = self.start("reranker", args=reranker_args) if reranker_args is not None else None
        if canary_dir is not None:
            llm = self.start_llm_canary(
                llm_args=llm_args, canary_dir=canary_dir, canary_percent=canary_percent
            )
        else:
            llm = self.start("llm", args=llm_args)
        for server in (llm, reranker):
            if server is not None:
                self.wait_ready(server)
        wiring = ["--llm_url", llm.openai_url, "--llm_model", llm.model_name]
        if reranker is not None:
            wiring += ["--reranker_url", reranker.openai_url, "--reranker_model", reranker.model_name]
        self.wait_ready(self.start("rag", args=[*wiring, *rag_args]))
        return dict(self.servers)

    def restart(self, label: str) -> LocalServer:
        """Start ``label``'s server again with its command and ports (its log goes on, appended)."""
        server = self.servers[label]
        stop_pid(server.pid)  # what is left of its process group
        ports = {server.http_port, server.grpc_port}
        wait_until(lambda: not any(port_in_use(port) for port in ports), timeout=30)
        pid = start_detached(
            server.command, cwd=self.settings.home, log_file=Path(server.log_file), env=self._env()
        )
        restarted = server.model_copy(update={"pid": pid, "restarts": server.restarts + 1})
        self.servers[label] = restarted
        return restarted

    def supervise(
        self,
        until: Callable[[], bool],
        *,
        first_delay: float = RESTART_DELAY,
        max_delay: float = MAX_RESTART_DELAY,
        stable_seconds: float = STABLE_SECONDS,
        interval: float = 0.5,
    ) -> None:
        """Until ``until()``: restart each server that died, with backoff; leave the others alone."""
        watches = {label: _Watch(delay=first_delay, up_since=time.monotonic()) for label in self.servers}
        while not until():
            now = time.monotonic()
            for label, server in list(self.servers.items()):
                watch = watches.setdefault(label, _Watch(delay=first_delay, up_since=now))
                if pid_alive(server.pid):
                    if now - watch.up_since >= stable_seconds:
                        watch.delay = first_delay
                    continue
                if watch.due is None:
                    watch.due = now + watch.delay
                    last = tail(Path(server.log_file), 1)
                    self.on_event(
                        f"{label} exited ({last or 'no log'}); restarting in {watch.delay:g} s "
                        f"(log: {server.log_file})"
                    )
                elif now >= watch.due:
                    restarted = self.restart(label)
                    self.on_event(f"restarted {label} on {restarted.url} (restart {restarted.restarts})")
                    watch.due, watch.up_since = None, time.monotonic()
                    watch.delay = min(watch.delay * 2, max_delay)
            time.sleep(interval)

    def stop(self) -> None:
        for role, server in reversed(list(self.servers.items())):
            stop_pid(server.pid)
            self.on_event(f"stopped {role}")
        self.servers.clear()

    def __enter__(self) -> LocalServers:
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop()


@dataclass
class _Watch:
    """One supervised server: the delay before its next restart, when it is due, since when up."""

    delay: float
    up_since: float
    due: float | None = None


def ask_rag(
    url: str, question: str, *, author_id: str | None = None, max_tokens: int = 128, timeout: float = 300.0
) -> dict:
    """One question to a RAG server's chat route: ``{answer, sources, timings_ms, request_id, ...}``."""
    from twinops.infra.llm_client import ChatRefused, CompletionFailed, Endpoint, chat_client, chat_completion

    endpoint = Endpoint(
        url=url,
        model=MODEL_NAMES["rag"],
        url_setting="--url",  # `twinops ask`'s flag
        model_setting="--url",
        key_setting="--url",
    )
    try:
        completion = chat_completion(
            chat_client(endpoint, timeout=timeout, max_retries=0),
            endpoint,
            [{"role": "user", "content": question}],
            max_tokens=max_tokens,
            **({"extra_body": {"author_id": author_id}} if author_id else {}),
        )
    except ChatRefused as refused:
        kind = ConfigError if refused.status < 500 else ServiceUnavailable
        raise kind(f"the RAG server answered {refused.status}: {refused.message}") from refused
    except CompletionFailed as failed:
        raise ServiceUnavailable(f"the RAG server at {url} did not answer within {timeout:g} s") from failed
    reply = completion.model_dump(mode="json")
    answer = completion.choices[0].message.content or ""
    extra = {key: value for key, value in reply.items() if key not in {"choices", "object", "created"}}
    return {"answer": answer, **extra}
