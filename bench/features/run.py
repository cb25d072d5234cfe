"""Feature benchmark: pipeline throughput vs raw encode, and MinHash dedup scaling.

1. Chunks per second end to end: clean → gate (PII, language, dedup) → chunk (MiniLM tokenizer)
   → embed (MiniLM) → upsert (Qdrant local mode), against raw ``SentenceTransformer.encode`` of
   the very same chunk texts with the same batch size, in the same run. Goal: ratio ≥ 0.8.
2. Near-duplicate detection for N short synthetic documents (10k, and 100k without --quick):
   twinops' ``Deduplicator`` (exact hash + MinHash LSH) vs datasketch's MinHash + MinHashLSH
   used directly on the same shingles.

    .venv/bin/python bench/features/run.py [--quick] [--docs N]
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from twinops.domain import Author, Category, Platform, RawDocument
from twinops.features.chunking import Chunker
from twinops.features.clean_gate import gate_document
from twinops.features.dedup import Deduplicator, shingles
from twinops.features.embedding import Embedder, embed_chunks
from twinops.features.jobs import FeatureJob, GateConfig
from twinops.features.vector_store import VectorStore
from twinops.settings import Settings

WORDS = (  # noqa: SIM905 (prose reads better than a list literal)
    "the model reads every document and learns how the author explains systems with care while "
    "latency budgets shape each design choice because engineers measure queues caches and retries "
    "before they trust a benchmark that looks too good to be true so they write tests first and "
    "ship small changes often to keep the pipeline healthy when traffic grows and data drifts over "
    "weeks of production use in teams that value clear writing about vector search and training"
).split()


def sentence(rng: random.Random) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(rng.randint(10, 22))).capitalize() + "."


def article(rng: random.Random, index: int) -> str:
    sections = []
    for part in range(3):
        paragraphs = "\n\n".join(" ".join(sentence(rng) for _ in range(4)) for _ in range(2))
        sections.append(f"## Part {part} of note {index}\n\n{paragraphs}")
    return f"# Note {index}\n\n" + "\n\n".join(sections)


def embedder_path() -> Path:
    settings = Settings()
    folder = settings.models_dir / "all-minilm-l6-v2"
    if not (folder / "config.json").exists():
        sys.exit(f"MiniLM is not cached at {folder}: run `make models` first")
    return folder


def pipeline_once(documents: list[RawDocument], embedder: Embedder, job: FeatureJob, batch_size: int):
    """One pass clean → gate → chunk → embed → upsert; returns (seconds, chunks, phase seconds)."""
    from qdrant_client import QdrantClient

    with tempfile.TemporaryDirectory() as folder:
        client = QdrantClient(path=folder)
        store = VectorStore(client)
        target = store.prepare("bench", "1", embedder.dimension, embedder="bench")
        t0 = time.perf_counter()
        dedup = Deduplicator(job.gates)
        chunker = Chunker(embedder.tokenizer, job.chunking, max_seq_length=embedder.max_seq_length)
        chunks = []
        for raw in documents:
            decision = gate_document(raw, job, vault=None, dedup=dedup, decontaminator=None)
            if decision.kept and decision.cleaned:
                chunks += chunker.chunk(decision.cleaned)
        t1 = time.perf_counter()
        embedded = embed_chunks(embedder, chunks, batch_size=batch_size)
        t2 = time.perf_counter()
        store.upsert_chunks(target.chunks, embedded)
        t3 = time.perf_counter()
        client.close()
    return t3 - t0, chunks, (t1 - t0, t2 - t1, t3 - t2)


def raw_once(model, texts: list[str], batch_size: int) -> float:
    t0 = time.perf_counter()
    model.encode(texts, batch_size=batch_size, normalize_embeddings=True, convert_to_numpy=True)
    return time.perf_counter() - t0


def bench_pipeline(docs: int, batch_size: int, rounds: int) -> None:
    from sentence_transformers import SentenceTransformer

    folder = embedder_path()
    model = SentenceTransformer(str(folder), device="cpu")
    embedder = Embedder(model=model, model_id=str(folder), version="bench")
    author = Author(full_name="Bench Author")
    rng = random.Random(7)
    documents = [
        RawDocument(
            platform=Platform.WEB,
            category=Category.ARTICLES,
            source_url=f"https://bench.example/{i}",
            author_id=author.id,
            author_name=author.full_name,
            content=article(rng, i),
        )
        for i in range(docs)
    ]
    job = FeatureJob(gates=GateConfig(pii_mode="redact"))
    model.encode(["warm up the model"] * batch_size, batch_size=batch_size)  # neither side pays warm-up

    # Interleaved rounds, best of each: on a shared machine the load changes from second to second.
    pipeline_best = raw_best = float("inf")
    phases = (0.0, 0.0, 0.0)
    chunks: list = []
    for _ in range(rounds):
        seconds, chunks, round_phases = pipeline_once(documents, embedder, job, batch_size)
        if seconds < pipeline_best:
            pipeline_best, phases = seconds, round_phases
        raw_best = min(raw_best, raw_once(model, [chunk.content for chunk in chunks], batch_size))

    pipeline_cps, raw_cps = len(chunks) / pipeline_best, len(chunks) / raw_best
    ratio = pipeline_cps / raw_cps
    print(f"documents {docs}, chunks {len(chunks)}, batch size {batch_size}, best of {rounds}")
    print(
        f"  pipeline end to end: {pipeline_cps:8.1f} chunks/s  (clean+gate+chunk {phases[0]:.2f}s, "
        f"embed {phases[1]:.2f}s, upsert {phases[2]:.2f}s)"
    )
    print(f"  raw encode:          {raw_cps:8.1f} chunks/s  ({raw_best:.2f}s)")
    verdict = "ok" if ratio >= 0.8 else "BELOW GOAL"
    print(f"  ratio pipeline/raw:  {ratio:8.2f}  (goal >= 0.80: {verdict})")


def bench_dedup(count: int) -> None:
    from datasketch import MinHash, MinHashLSH

    rng = random.Random(count)
    texts = [sentence(rng) + " " + sentence(rng) for _ in range(count)]
    # Every 20th document repeats an earlier one with one word changed: real near duplicates.
    for i in range(20, count, 20):
        words = texts[i - 7].split()
        words[-2] = "changed"
        texts[i] = " ".join(words)
    config = GateConfig()

    started = time.perf_counter()
    dedup = Deduplicator(config)
    ours = sum(dedup.check(str(i), text)[0] is not None for i, text in enumerate(texts))
    ours_seconds = time.perf_counter() - started

    started = time.perf_counter()
    template = MinHash(num_perm=config.minhash_permutations)
    lsh = MinHashLSH(threshold=config.near_dup_threshold, num_perm=config.minhash_permutations)
    raw_found = 0
    for i, text in enumerate(texts):
        sketch = MinHash(
            num_perm=config.minhash_permutations, permutations=template.permutations, scheme="affine32"
        )
        sketch.update_batch(shingles(text, config.shingle_words))
        if lsh.query(sketch):
            raw_found += 1
        else:
            lsh.insert(str(i), sketch)
    raw_seconds = time.perf_counter() - started
    print(
        f"dedup {count:>7} docs: twinops {ours_seconds:6.2f}s "
        f"({count / ours_seconds:8.0f} docs/s, {ours} dups) | "
        f"raw datasketch {raw_seconds:6.2f}s ({raw_found} LSH hits, unverified) | "
        f"ratio {raw_seconds / ours_seconds:.2f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="Small corpus, dedup at 10k only.")
    parser.add_argument("--docs", type=int, default=None, help="Documents for the pipeline part.")
    parser.add_argument("--batch-size", type=int, default=64)
    args = parser.parse_args()
    sys.stdout.reconfigure(line_buffering=True)  # results appear as they come, also through a pipe
    bench_pipeline(args.docs or (30 if args.quick else 60), args.batch_size, rounds=2)
    for count in (10_000,) if args.quick else (10_000, 100_000):
        bench_dedup(count)


if __name__ == "__main__":
    main()
