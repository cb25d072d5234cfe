"""Serving benchmark: each figure a ratio against the raw library doing the same work in the same run.

- LLM tokens/s through the server (OpenAI chat, one request at a time) vs. in-process
  ``model.generate`` on the same prompts, greedy, same max_tokens, the two taking turns prompt by
  prompt (goal >= 0.85);
- tokens/s with 8 concurrent clients vs. one at a time through the same server (goal >= 3x, from
  continuous batching);
- reranker pairs/s through ``/openai/v1/rerank`` vs. raw ``CrossEncoder.predict`` (goal >= 0.85);
- RAG latency p50/p95 split by stage (the pipeline in this process, the LLM and the reranker behind
  their servers), over a small index of the demo corpus built here;
- each server's peak resident memory (VmHWM).

The servers are the same ``python -m twinops.serving.<role>`` processes a pod runs, on 127.0.0.1.
The models are the bundled SmolLM2-135M and a cross-encoder made from MiniLM (no pretrained
cross-encoder ships offline; its scores are meaningless, its cost is real).

    .venv/bin/python bench/serving/run.py [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import httpx

from twinops.models.bundled import pull_all
from twinops.models.loaders import load_causal_lm
from twinops.services.process import free_port
from twinops.serving.local import LocalServers
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


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def settle() -> None:
    """Let this process's compute threads go idle before timing a server on the same cores."""
    time.sleep(1.0)


def chat(url: str, prompt: str, max_tokens: int) -> int:
    reply = httpx.post(
        f"{url}/openai/v1/chat/completions",
        json={
            "model": "twin-llm",
            "messages": [{"role": "user", "content": prompt}],
            "max_tokens": max_tokens,
            "temperature": 0,
        },
        timeout=600,
    )
    reply.raise_for_status()
    return int(reply.json()["usage"]["completion_tokens"])


def single_stream_tokens_per_second(model_dir: str, url: str, max_tokens: int) -> tuple[float, float]:
    """(in-process ``generate``, server) tokens/s, one request at a time, the two taking turns per
    prompt so that a machine that speeds up or slows down during the run weighs on both alike."""
    import torch

    model, tokenizer = load_causal_lm(model_dir)
    model.eval()
    encoded = [
        tokenizer.apply_chat_template(
            [{"role": "user", "content": p}], add_generation_prompt=True, tokenize=True, return_dict=True
        )["input_ids"]
        for p in PROMPTS
    ]
    with torch.inference_mode():  # warm-up
        model.generate(torch.tensor([encoded[0]]), max_new_tokens=4, do_sample=False)
    chat(url, PROMPTS[0], 4)
    raw_tokens = raw_seconds = served_tokens = served_seconds = 0.0
    for prompt, ids in zip(PROMPTS, encoded, strict=True):
        start = time.perf_counter()
        with torch.inference_mode():
            out = model.generate(
                torch.tensor([ids]),
                max_new_tokens=max_tokens,
                do_sample=False,
                pad_token_id=tokenizer.pad_token_id,
            )
        raw_seconds += time.perf_counter() - start
        raw_tokens += out.shape[1] - len(ids)
        settle()
        start = time.perf_counter()
        served_tokens += chat(url, prompt, max_tokens)
        served_seconds += time.perf_counter() - start
    return raw_tokens / raw_seconds, served_tokens / served_seconds


def concurrent_tokens_per_second(url: str, max_tokens: int, clients: int) -> float:
    start = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        tokens = sum(pool.map(lambda p: chat(url, p, max_tokens), PROMPTS[:clients]))
    return tokens / (time.perf_counter() - start)


def make_cross_encoder(settings: Settings, folder: Path) -> str:
    from sentence_transformers import CrossEncoder

    CrossEncoder(str(settings.models_dir / "all-minilm-l6-v2"), num_labels=1).save_pretrained(str(folder))
    return str(folder)


def rerank_pairs_per_second(url: str, folder: str, documents: list[str], rounds: int) -> tuple[float, float]:
    from sentence_transformers import CrossEncoder

    query = "How do chunking strategies behave in production?"
    model = CrossEncoder(folder, device="cpu")
    model.predict([(query, d) for d in documents[:4]], show_progress_bar=False)  # warm-up
    body = {"model": "twin-reranker", "query": query, "documents": documents}
    httpx.post(f"{url}/openai/v1/rerank", json={**body, "documents": documents[:4]}, timeout=600)
    raw_seconds = served_seconds = 0.0
    for _ in range(rounds):  # taking turns, as the LLM figures do
        start = time.perf_counter()
        model.predict([(query, d) for d in documents], show_progress_bar=False)
        raw_seconds += time.perf_counter() - start
        settle()
        start = time.perf_counter()
        httpx.post(f"{url}/openai/v1/rerank", json=body, timeout=600).raise_for_status()
        served_seconds += time.perf_counter() - start
    raw = rounds * len(documents) / raw_seconds
    served = rounds * len(documents) / served_seconds
    return served, raw


def demo_passages(limit: int) -> list[str]:
    corpus = Path(__file__).resolve().parents[2] / "data" / "demo-corpus"
    passages = []
    for path in sorted(corpus.glob("*.md")):
        body = path.read_text(encoding="utf-8").split("---", 2)[-1]
        passages += [p.strip() for p in body.split("\n\n") if len(p.strip()) > 80]
    return passages[:limit]


def rag_stage_latencies(settings: Settings, llm_url: str, reranker_url: str, questions: int) -> dict:
    """p50/p95 per stage of the RAG pipeline over an index of demo passages built here."""
    from twinops.domain.documents import Category, Chunk, EmbeddedChunk, Platform
    from twinops.features.embedding import embed_chunks, open_embedder
    from twinops.features.vector_store import VectorStore
    from twinops.infra.qdrant import open_qdrant
    from twinops.serving.clients import ChatClient, RerankerClient
    from twinops.serving.index import LiveIndex
    from twinops.serving.rag_pipeline import RagPipeline

    embedder = open_embedder(settings)
    chunks = [
        Chunk(
            document_id=f"doc-{i // 4}",
            author_id="ada",
            author_name="Ada Quill",
            platform=Platform.LOCAL,
            category=Category.ARTICLES,
            source_url=f"file://demo/{i // 4}",
            chunk_index=i % 4,
            content=text,
            token_count=len(text.split()),
            document_content_hash=f"hash-{i // 4}",
        )
        for i, text in enumerate(demo_passages(80))
    ]
    embedded: list[EmbeddedChunk] = embed_chunks(embedder, chunks, batch_size=32)
    with open_qdrant(settings) as client:
        store = VectorStore(client)
        target = store.prepare(
            embedder.slug, embedder.version, embedder.dimension, embedder=embedder.model_id
        )
        store.upsert_chunks(target.chunks, embedded)
        store.switch_aliases(target)
    index = LiveIndex(settings)
    index.refresh()
    pipeline = RagPipeline(
        embedder=embedder,
        index=index,
        generator=ChatClient(llm_url, "twin-llm"),
        reranker=RerankerClient(reranker_url, "twin-reranker"),
        authors=[("ada", "Ada Quill")],
    )

    async def run() -> list[dict[str, float]]:
        timings = []
        for i in range(questions):
            answer = await pipeline.answer(PROMPTS[i % len(PROMPTS)], max_tokens=32)
            timings.append(answer.timings_ms)
        return timings

    timings = asyncio.run(run())
    stages = sorted({stage for t in timings for stage in t})
    table = {}
    for stage in stages:
        values = sorted(t[stage] for t in timings if stage in t)
        p95 = values[min(len(values) - 1, round(0.95 * (len(values) - 1)))]
        table[stage] = (statistics.median(values), p95)
    return table


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="Fewer tokens and rounds (a smoke run).")
    options = parser.parse_args()
    max_tokens = 16 if options.quick else 48
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(home=Path(tmp) / "home")
        os.environ["TWINOPS_HOME"] = str(settings.home)
        source = Settings()  # the project's model cache: copy instead of converting again
        if (source.models_dir / "smollm2-135m-instruct" / "config.json").exists():
            import shutil

            shutil.copytree(source.models_dir, settings.models_dir)
        pull_all(settings)
        llm_dir = str(settings.models_dir / "smollm2-135m-instruct")
        reranker_dir = make_cross_encoder(settings, Path(tmp) / "cross-encoder")
        with LocalServers(settings) as servers:
            llm = servers.start("llm", port=free_port(), args=["--model_dir", llm_dir])
            reranker = servers.start("reranker", port=free_port(), args=["--model_dir", reranker_dir])
            servers.wait_ready(llm)
            servers.wait_ready(reranker)
            raw, one = single_stream_tokens_per_second(llm_dir, llm.url, max_tokens)
            eight = concurrent_tokens_per_second(llm.url, max_tokens, 8)
            print(f"LLM tokens/s: in-process generate {raw:.1f}, server one at a time {one:.1f}")
            print(f"  server / in-process             = {one / raw:.2f}  (goal >= 0.85)")
            print(
                f"  8 concurrent clients {eight:.1f} tok/s; / one at a time = {eight / one:.2f} (goal >= 3)"
            )
            served, raw_pairs = rerank_pairs_per_second(
                reranker.url, reranker_dir, demo_passages(32), 2 if options.quick else 6
            )
            print(f"reranker pairs/s: server {served:.1f}, CrossEncoder.predict {raw_pairs:.1f}")
            print(f"  server / raw                    = {served / raw_pairs:.2f}  (goal >= 0.85)")
            table = rag_stage_latencies(
                settings, llm.openai_url, reranker.openai_url, 4 if options.quick else 12
            )
            print("RAG latency by stage (ms, pipeline in-process, LLM and reranker over HTTP):")
            for stage, (p50, p95) in table.items():
                print(f"  {stage:<16} p50 {p50:9.1f}   p95 {p95:9.1f}")
            for server in (llm, reranker):
                print(f"peak memory {server.role:<9} {peak_rss_mb(server.pid):8.0f} MB")
            print(
                f"peak memory bench     {peak_rss_mb(os.getpid()):8.0f} MB (in-process model, embedder, RAG)"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
