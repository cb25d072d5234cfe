"""The real model servers, each started once per test session as the process a pod runs.

Every server is ``python -m twinops.serving.<role>`` on 127.0.0.1, started and stopped through
``LocalServers`` on free ports, with the bundled models: SmolLM2-135M for the LLM, all-MiniLM-L6-v2
for the embedder, and a cross-encoder made from MiniLM for the reranker (its head is random but
saved once, so the server and the in-process reference score with the same weights). Loading is
the slow part on two cores, so modules share these session fixtures.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from twinops.services.process import free_port, port_in_use
from twinops.serving.local import LocalServer, LocalServers
from twinops.settings import Settings

SMOLLM = "smollm2-135m-instruct"
MINILM = "all-minilm-l6-v2"
# Small, so that "max_tokens over the limit" is cheap to ask for; every good request stays under it.
LLM_MAX_TOKENS_LIMIT = 48


@pytest.fixture(scope="session")
def smollm_dir(bundled_models_dir: Path) -> Path:
    return bundled_models_dir / SMOLLM


@pytest.fixture(scope="session")
def minilm_dir(bundled_models_dir: Path) -> Path:
    return bundled_models_dir / MINILM


@pytest.fixture(scope="session")
def cross_encoder_dir(minilm_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A one-label cross-encoder folder built from MiniLM (any cross-encoder folder serves)."""
    import torch
    from sentence_transformers import CrossEncoder

    torch.manual_seed(0)
    target = tmp_path_factory.mktemp("cross-encoder") / "minilm-cross-encoder"
    CrossEncoder(str(minilm_dir), num_labels=1, device="cpu").save_pretrained(str(target))
    return target


@pytest.fixture(scope="session")
def local_servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalServers]:
    """One LocalServers for the session: it stops every server it started at the end."""
    with LocalServers(Settings(home=tmp_path_factory.mktemp("serve-home"))) as servers:
        yield servers


def _free_port_pair() -> int:
    """A free HTTP port whose successor (the gRPC port) is free too."""
    for _ in range(50):
        port = free_port()
        if not port_in_use(port + 1):
            return port
    raise RuntimeError("no two adjacent free ports on 127.0.0.1")


def start_server(servers: LocalServers, role: str, *args: str, model_name: str | None = None) -> LocalServer:
    server = servers.start(role, port=_free_port_pair(), args=list(args), model_name=model_name)
    servers.wait_ready(server)
    return server


@pytest.fixture(scope="session")
def llm_server(local_servers: LocalServers, smollm_dir: Path) -> LocalServer:
    return start_server(
        local_servers,
        "llm",
        "--model_dir",
        str(smollm_dir),
        "--max_tokens_limit",
        str(LLM_MAX_TOKENS_LIMIT),
        # A wide window, so that requests sent together reliably meet in one batch on a busy CPU.
        "--batch_window_ms",
        "150",
    )


@pytest.fixture(scope="session")
def embedder_server(local_servers: LocalServers, minilm_dir: Path) -> LocalServer:
    return start_server(local_servers, "embedder", "--model_dir", str(minilm_dir))


@pytest.fixture(scope="session")
def reranker_server(local_servers: LocalServers, cross_encoder_dir: Path) -> LocalServer:
    return start_server(local_servers, "reranker", "--model_dir", str(cross_encoder_dir))


def grpc_address(server: LocalServer) -> str:
    return f"127.0.0.1:{server.grpc_port}"


def scrape(server: LocalServer) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of the server's ``/metrics``: (name, sorted labels) → value."""
    text = httpx.get(f"{server.url}/metrics", timeout=30).text
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def metric(samples: dict, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


@pytest.fixture(scope="session")
def twin_adapters_dir(tiny_llama: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """LoRA adapters on the tiny base (seeds 1-3), one of rank 8, one on another base of its shape."""
    from twinops.models.tiny import build_random_lora, build_tiny_llama

    root = tmp_path_factory.mktemp("adapters")
    for seed in (1, 2, 3):
        build_random_lora(tiny_llama, root / f"seed{seed}", seed=seed)
    build_random_lora(tiny_llama, root / "rank8", seed=4, rank=8)
    other_base = build_tiny_llama(tiny_llama, root / "other-base", seed=7)
    build_random_lora(other_base, root / "other-base-adapter", seed=5)
    return root


def register_twin(settings, twin: str, adapter_dir: Path, base: Path, *, champion: bool = True) -> str:
    """A new version of ``twin`` whose adapter is ``adapter_dir`` on ``base``; champion unless told."""
    from twinops.infra.registry import CHAMPION, client

    mlflow_client = client(settings)
    if not mlflow_client.search_registered_models(filter_string=f"name = '{twin}'"):
        mlflow_client.create_registered_model(twin)
    tags = {"model_dir": str(adapter_dir), "adapter_dir": str(adapter_dir), "base_model": str(base)}
    version = mlflow_client.create_model_version(twin, source=str(adapter_dir), tags=tags).version
    if champion:
        mlflow_client.set_registered_model_alias(twin, CHAMPION, version)
    return str(version)


def greedy_alone(base: Path, adapter_dir: Path | None, prompt: str, tokens: int) -> str:
    """The greedy completion of ``prompt`` by ``base`` with this one adapter (PEFT's own model,
    outside any server), cut at EOS as a server cuts it."""
    import torch
    from peft import PeftModel

    from twinops.models.loaders import load_causal_lm

    model, tokenizer = load_causal_lm(str(base))
    if adapter_dir is not None:
        model = PeftModel.from_pretrained(model, str(adapter_dir))
    model.eval()
    ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    with torch.inference_mode():
        out = model.generate(
            torch.tensor([ids]), max_new_tokens=tokens, do_sample=False, pad_token_id=tokenizer.pad_token_id
        )
    answer = out[0, len(ids) :].tolist()
    if tokenizer.eos_token_id in answer:
        answer = answer[: answer.index(tokenizer.eos_token_id)]
    return tokenizer.decode(answer, skip_special_tokens=True)
