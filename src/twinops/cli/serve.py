"""``twinops serve`` (the model servers on 127.0.0.1) and ``twinops ask`` (a question to the twin)."""

from __future__ import annotations

import contextlib
import signal
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from twinops.cli.common import JSON_HELP, console, err_console, print_json
from twinops.errors import ConfigError
from twinops.settings import get_settings

DEFAULT_RAG_URL = "http://127.0.0.1:8480/openai/v1"


class Role(StrEnum):
    llm = "llm"
    reranker = "reranker"
    embedder = "embedder"
    rag = "rag"
    all = "all"


def reranker_args(reranker_dir: Path | None) -> list[str] | None:
    """Arguments for the reranker, or None when there is nothing that earned serving."""
    from twinops.infra.registry import RERANKER_MODEL, champion_or_none

    if reranker_dir is not None:
        return ["--model_dir", str(reranker_dir)]
    return [] if champion_or_none(RERANKER_MODEL, get_settings()) is not None else None


def serve(
    role: Annotated[Role, typer.Argument(help="Which server: llm, reranker, embedder, rag, or all.")],
    *,
    model_dir: Annotated[
        Path | None,
        typer.Option("--model-dir", help="Folder to serve (llm/reranker/embedder); default: the champion."),
    ] = None,
    reranker_dir: Annotated[
        Path | None, typer.Option("--reranker-dir", help="With `all`: a cross-encoder folder to serve.")
    ] = None,
    port: Annotated[
        int | None, typer.Option("--port", help="HTTP port of a single server (gRPC on port + 1).")
    ] = None,
    llm_url: Annotated[
        str | None, typer.Option("--llm-url", help="With `rag`: the LLM server's OpenAI base URL.")
    ] = None,
    canary_dir: Annotated[
        Path | None,
        typer.Option(
            "--canary-dir",
            help="With `llm` or `all`: a second model folder behind a weighted router (RAG calls it).",
        ),
    ] = None,
    canary_percent: Annotated[
        int, typer.Option("--canary-percent", min=0, max=100, help="With --canary-dir: its traffic share.")
    ] = 0,
    twins: Annotated[
        str | None,
        typer.Option(
            "--twins",
            help="With `llm`: many twins on one base, `all` or a comma list of twins (each answers by its "
            "name, twin-llm-<author>, on its champion adapter; --model-dir names the base); an entry "
            "models:/twin-llm-<author>/VERSION pins that version.",
        ),
    ] = None,
) -> None:
    """Start model servers on 127.0.0.1 and keep them up until Ctrl-C.

    Each is the same `python -m twinops.serving.<role>` a KServe pod runs: V1 and V2 (REST and
    gRPC) and the OpenAI API under /openai/v1. The LLM serves twin-llm@champion when the registry
    has one, else the base model; `all` adds the reranker only while twin-reranker has a champion
    (RAG ranks by cosine otherwise) and RAG wired to both. `llm --canary-dir DIR` also serves DIR
    and puts a weighted router on :8188 in front of both (`twinops rollout start --router`); with
    `all`, RAG calls the LLM through that router, so the canary takes its share of RAG traffic.
    `llm --twins all` serves every twin with a champion from one base, each on its LoRA adapter,
    and switches a twin to its new champion's adapter without a restart.
    """
    from twinops.serving.local import LocalServers

    settings = get_settings()
    source = ["--model_dir", str(model_dir)] if model_dir else []
    if twins is not None and (role != Role.llm or canary_dir is not None):
        raise ConfigError("--twins goes with `twinops serve llm` (without --canary-dir)", setting="--twins")
    with LocalServers(settings, on_event=lambda m: err_console.print(m, highlight=False)) as servers:
        if role == Role.all:
            servers.start_all(
                llm_args=source,
                reranker_args=reranker_args(reranker_dir),
                canary_dir=canary_dir,
                canary_percent=canary_percent,
            )
        elif twins is not None:
            from twinops.serving.twins import BASE_NAME

            server = servers.start("llm", port=port, args=[*source, "--twins", twins], model_name=BASE_NAME)
            servers.wait_ready(server)
        elif role == Role.llm and canary_dir is not None:
            servers.start_llm_canary(llm_args=source, canary_dir=canary_dir, canary_percent=canary_percent)
        else:
            args = source if role != Role.rag else (["--llm_url", llm_url] if llm_url else [])
            servers.wait_ready(servers.start(role.value, port=port, args=args))
        for server in servers.servers.values():
            grpc = "weighted router, HTTP only" if server.role == "router" else f"gRPC :{server.grpc_port}"
            console.print(
                f"{server.model_name:<14} {server.url}  OpenAI {server.openai_url}  {grpc}",
                highlight=False,
                markup=False,
            )
        console.print("Ctrl-C stops them; a server that dies is restarted", markup=False)
        stopping = []
        signal.signal(signal.SIGTERM, lambda *_: stopping.append(True))
        with contextlib.suppress(KeyboardInterrupt):
            servers.supervise(until=lambda: bool(stopping))
    err_console.print("servers stopped")


def ask(
    question: Annotated[str, typer.Argument(help="The question for the twin.")],
    url: Annotated[str, typer.Option("--url", help="The RAG server's OpenAI base URL.")] = DEFAULT_RAG_URL,
    author: Annotated[
        str | None, typer.Option("--author", help="Answer from this author id's documents.")
    ] = None,
    max_tokens: Annotated[int, typer.Option("--max-tokens", min=1, help="Longest answer, in tokens.")] = 128,
    as_json: Annotated[bool, typer.Option("--json", help=JSON_HELP)] = False,
) -> None:
    """Ask the twin (the RAG server) a question; print the answer and its sources."""
    from twinops.serving.local import ask_rag

    reply = ask_rag(url, question, author_id=author, max_tokens=max_tokens)
    if as_json:
        print_json(reply)
        return
    print_answer(reply)


def print_answer(reply: dict) -> None:
    """The answer, then its numbered sources (the prompt's [n] citations) and stage timings."""
    console.print(reply["answer"], markup=False, highlight=False)
    console.print("\nsources:", markup=False)
    for number, source in enumerate(reply.get("sources", []), 1):
        rerank = source.get("rerank_score")
        scores = f"cosine {source['score']:.3f}" + (f", rerank {rerank:.3f}" if rerank is not None else "")
        line = f"  [{number}] {source['source_url']}  ({scores})"
        console.print(line, markup=False, highlight=False, soft_wrap=True)  # a URL stays one line
    timings = reply.get("timings_ms", {})
    if timings:
        parts = ", ".join(f"{stage} {ms:.0f}" for stage, ms in timings.items())
        console.print(f"timings (ms): {parts}", markup=False, highlight=False, soft_wrap=True)
    console.print(f"request id: {reply.get('request_id')}", markup=False, highlight=False)
