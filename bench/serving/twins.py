"""Many twins on one base: what serving four twins' LoRA adapters costs beside the base alone.

- tokens/s of 8 concurrent clients spread over 4 twins (2 each) vs. 8 clients on the base alone,
  on the same ``--twins`` server, the two loads taking turns round by round (goal >= 0.85);
- adapter switch time under that load: from moving a twin's ``champion`` alias in the registry to
  the server serving the new adapter (its ``twinops_llm_adapter_version`` gauge), polled every
  50 ms, and the server's own load-to-switch seconds; requests failed meanwhile (goal: within 5 s,
  zero failed);
- server memory (resident after warm-up, and peak) with 1 twin and with 4 twins, beside the plain
  single-model server, against the adapters' size on disk (goal: growth by the adapters' size, not
  by a model per twin).

The base is the bundled SmolLM2-135M; the adapters are random LoRA adapters of the training
defaults' shape (rank 16 on every linear layer) made here at a small gain, so the twins write
near the base and answers keep comparable lengths. The registry is a real MLflow store (sqlite)
in a temporary home; the servers are the ``python -m twinops.serving.llm`` processes a pod runs.

Do not run it beside other work on the machine: its figures are ratios within one run, but two
cores shared with a test suite make them noise.

    .venv/bin/python bench/serving/twins.py [--quick]
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import httpx
from prometheus_client.parser import text_string_to_metric_families

from twinops.infra.registry import CHAMPION, client
from twinops.models.bundled import pull_all
from twinops.models.tiny import build_random_lora
from twinops.services.process import free_port
from twinops.serving.local import LocalServer, LocalServers
from twinops.serving.twins import BASE_NAME
from twinops.settings import Settings

PROMPTS = [
    "Explain in two sentences why chunk size matters for retrieval.",
    "What is a model registry alias for?",
    "Give one tip for fine-tuning with LoRA on a small GPU.",
    "Why deduplicate training data?",
    "What does DPO optimise, in plain words?",
    "Name a risk of evaluating on a tiny golden set.",
    "Why put GPU steps on their own node pool?",
    "What should a quality gate check before training?",
]
TWINS = [f"twin-llm-author-{letter}" for letter in "abcd"]
ALL_LINEAR = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
CLIENTS = 8


def memory_mb(pid: int) -> tuple[float, float]:
    """(resident now, peak resident) of a process, in MB."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = int(value.split()[0]) / 1024
    return fields["VmRSS"], fields["VmHWM"]


def chat(url: str, model: str, prompt: str, max_tokens: int) -> int:
    reply = httpx.post(
        f"{url}/openai/v1/chat/completions",
        json={
            "model": model,
            "messages": [{"role": "user", "content": prompt}],
            "max_tokens": max_tokens,
            "temperature": 0,
        },
        timeout=600,
    )
    reply.raise_for_status()
    return int(reply.json()["usage"]["completion_tokens"])


def load_tokens_per_second(url: str, models: list[str], max_tokens: int) -> float:
    """8 clients at once, client i on ``models[i]`` with prompt i."""
    start = time.perf_counter()
    with ThreadPoolExecutor(CLIENTS) as pool:
        tokens = sum(pool.map(lambda i: chat(url, models[i], PROMPTS[i], max_tokens), range(CLIENTS)))
    return tokens / (time.perf_counter() - start)


def gauge(url: str, name: str, model: str) -> float | None:
    text = httpx.get(f"{url}/metrics", timeout=30).text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and sample.labels.get("model") == model:
                return sample.value
    return None


def register(settings: Settings, twin: str, adapter_dir: Path, base_dir: str) -> str:
    mlflow_client = client(settings)
    if not mlflow_client.search_registered_models(filter_string=f"name = '{twin}'"):
        mlflow_client.create_registered_model(twin)
    tags = {"model_dir": str(adapter_dir), "adapter_dir": str(adapter_dir), "base_model": base_dir}
    return str(mlflow_client.create_model_version(twin, source=str(adapter_dir), tags=tags).version)


def start_llm(servers: LocalServers, args: list[str], *, model_name: str | None = None) -> LocalServer:
    server = servers.start("llm", port=free_port(), args=args, model_name=model_name)
    servers.wait_ready(server)
    return server


def warm_memory(server: LocalServer, models: list[str]) -> tuple[float, float]:
    """Memory after every model answered once (adapters and KV cache in place)."""
    for model in models:
        chat(server.url, model, PROMPTS[0], 8)
    return memory_mb(server.pid)


def switch_under_load(
    server: LocalServer, settings: Settings, twin: str, *, adapter: Path, base_dir: str, max_tokens: int
):
    """Seconds from the alias move to the server serving the new version, and failed requests."""
    stop = threading.Event()
    failures: list[str] = []
    served = [0]

    def client_loop(i: int) -> None:
        while not stop.is_set():
            try:
                chat(server.url, TWINS[i % len(TWINS)], PROMPTS[i], max_tokens)
                served[0] += 1
            except httpx.HTTPError as error:
                failures.append(str(error))

    with ThreadPoolExecutor(CLIENTS) as pool:
        for i in range(CLIENTS):
            pool.submit(client_loop, i)
        time.sleep(3.0)  # the load is running
        version = register(settings, twin, adapter, base_dir)
        moved = time.perf_counter()
        client(settings).set_registered_model_alias(twin, CHAMPION, version)
        while gauge(server.url, "twinops_llm_adapter_version", twin) != float(version):
            if time.perf_counter() - moved > 120:
                stop.set()
                raise RuntimeError("the server never switched to the new champion")
            time.sleep(0.05)
        switched = time.perf_counter() - moved
        time.sleep(3.0)  # requests that began before the switch finish on the old adapter
        stop.set()
    loaded = gauge(server.url, "twinops_llm_adapter_switch_seconds_sum", twin)
    return switched, loaded, len(failures), served[0]


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="Fewer tokens and rounds (a smoke run).")
    options = parser.parse_args()
    # A library imported on the way turns the root logger to INFO; httpx would then log every request.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    max_tokens = 16 if options.quick else 48
    rounds = 1 if options.quick else 3
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(home=Path(tmp) / "home", mlflow_tracking_uri=f"sqlite:///{tmp}/mlflow.db")
        os.environ["TWINOPS_HOME"] = str(settings.home)
        os.environ["TWINOPS_MLFLOW_TRACKING_URI"] = settings.mlflow_tracking_uri
        source = Settings()  # the project's model cache: copy instead of converting again
        if (source.models_dir / "smollm2-135m-instruct" / "config.json").exists():
            shutil.copytree(source.models_dir, settings.models_dir)
        pull_all(settings)
        base_dir = str(settings.models_dir / "smollm2-135m-instruct")
        adapters = [
            build_random_lora(
                base_dir, Path(tmp) / f"adapter-{i}", seed=i, rank=16, target_modules=ALL_LINEAR, gain=0.1
            )
            for i in range(len(TWINS) + 1)
        ]
        adapter_mb = statistics.mean(
            (a / "adapter_model.safetensors").stat().st_size / 2**20 for a in adapters
        )
        for twin, adapter in zip(TWINS, adapters, strict=False):
            version = register(settings, twin, adapter, base_dir)
            client(settings).set_registered_model_alias(twin, CHAMPION, version)
        print(f"adapters: {len(adapters)} x {adapter_mb:.1f} MB (rank 16, every linear layer)")

        memory = {}
        with LocalServers(settings) as servers:
            plain = start_llm(servers, ["--model_dir", base_dir])
            memory["plain server (no --twins)"] = warm_memory(plain, ["twin-llm"])
        with LocalServers(settings) as servers:
            one = start_llm(servers, ["--model_dir", base_dir, "--twins", TWINS[0]], model_name=BASE_NAME)
            memory["--twins, 1 twin"] = warm_memory(one, [BASE_NAME, TWINS[0]])
        with LocalServers(settings) as servers:
            four = start_llm(
                servers,
                ["--model_dir", base_dir, "--twins", "all", "--poll_seconds", "1"],
                model_name=BASE_NAME,
            )
            memory["--twins, 4 twins"] = warm_memory(four, [BASE_NAME, *TWINS])
            base_only, spread = [], []
            for _ in range(rounds):  # taking turns, so a machine that drifts weighs on both alike
                base_only.append(load_tokens_per_second(four.url, [BASE_NAME] * CLIENTS, max_tokens))
                spread.append(
                    load_tokens_per_second(four.url, [TWINS[i % 4] for i in range(CLIENTS)], max_tokens)
                )
            switched, loaded, failed, served = switch_under_load(
                four, settings, TWINS[0], adapter=adapters[-1], base_dir=base_dir, max_tokens=max_tokens
            )
        base_tps, twins_tps = statistics.median(base_only), statistics.median(spread)
        print(f"8 clients on the base alone      {base_tps:7.1f} tok/s (median of {rounds})")
        print(f"8 clients over 4 twins           {twins_tps:7.1f} tok/s")
        print(f"  4 twins / base alone           = {twins_tps / base_tps:.2f}  (goal >= 0.85)")
        print(f"adapter switch under load: served {switched:.2f} s after the alias moved (goal <= 5),")
        print(
            f"  load and switch in the server {loaded:.2f} s; {failed} failed of {served + failed} requests"
        )
        for name, (resident, peak) in memory.items():
            print(f"memory {name:<26} resident {resident:7.0f} MB   peak {peak:7.0f} MB")
        growth = memory["--twins, 4 twins"][0] - memory["--twins, 1 twin"][0]
        print(f"  3 more twins add {growth:.0f} MB resident (3 adapters on disk: {3 * adapter_mb:.0f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
