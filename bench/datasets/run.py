"""Datasets benchmark: twinops' dataset steps against the raw libraries doing the same work.

0. Rows per second of the instruction builder (issue 26): its generator path (the passage view's
   questions through ``GenerationRun`` in batches, each checked by ``requests.request_problem``,
   plus the template views of the same chunks) against raw ``model.generate`` over the same
   prompts with the same model and batch size; and the template path alone (budget 0, no model)
   over 800 chunks, the size issue 26 asks to build in minutes.
1. Local generation: ``LocalGenerator`` (chat template, length-sorted batches, stop at newline)
   vs a plain ``model.generate`` loop over the same prompts in input order, same batch size.
   Uses the tiny random Llama with ``--quick``, else the bundled SmolLM2-135M.
2. Near-duplicate filtering: ``filter_instructions`` (length/refusal/boilerplate + MinHash LSH,
   verified by the MinHash estimate) vs raw datasketch LSH insert/query on the same strings.
3. Materialization: ``store._write`` (typed HF DatasetDict + JSONL per split, staged then renamed)
   vs raw ``Dataset.from_list(...).save_to_disk``.

    .venv/bin/python bench/datasets/run.py [--quick]

Measured here with SmolLM2-135M on 2 cores that other jobs kept busy (load 8 to 18, so the ratios
are loose): the builder 0.29 chunks/s against raw generate's 0.06 (it stops at the question's
newline, raw decodes all 32 tokens), 1.4 rows/s with every view; the template path about 2,000
rows/s over 800 chunks.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections import Counter
from pathlib import Path

from twinops.datasets.budget import GenerationRun
from twinops.datasets.corpus import Corpus
from twinops.datasets.generators.local import LocalGenerator
from twinops.datasets.instruction import (
    InstructionExample,
    filter_instructions,
    generated_instructions,
    passage_examples,
    template_views,
    usable_passages,
)
from twinops.datasets.jobs import DatasetJob
from twinops.datasets.prompts import INSTRUCTION_PROMPT, load_prompt
from twinops.domain import Author, Category, Chunk, DatasetKind, DatasetVersion, Platform
from twinops.infra.dataset_store import _write
from twinops.settings import Settings

TOPICS = ["databases", "small models", "data versioning", "Kubernetes quotas", "writing style", "GPU pools"]


def passage(n: int) -> str:
    topic = TOPICS[n % len(TOPICS)]
    return (
        f"Note {n} on {topic}. I learned the hard way that {topic} reward boring, repeatable choices. "
        f"Measure first, write the decision down, and change one thing at a time when {topic} misbehave."
    )


def chunk_text(n: int) -> str:
    """About 110 words in three paragraphs, as a demo chunk is."""
    topic = TOPICS[n % len(TOPICS)]
    return "\n\n".join(
        [
            passage(n),
            f"The second thing about {topic} in note {n}: the first fix is rarely the right one, and the "
            f"logs of the last incident told us more about {topic} than any design review did.",
            f"So for {topic} I keep a short checklist, I read it before every change, and I delete the "
            f"items that stopped catching anything (note {n}).",
        ]
    )


def corpus(chunks: int) -> Corpus:
    author = Author(full_name="Bench Author")
    made = [
        Chunk(
            document_id=f"doc-{n // 3}",
            author_id=author.id,
            author_name=author.full_name,
            platform=Platform.LOCAL,
            category=Category.ARTICLES,
            source_url=f"file:///bench/{n // 3}.md",
            chunk_index=n % 3,
            content=chunk_text(n),
            token_count=150,
            document_content_hash=f"h{n // 3}",
        )
        for n in range(chunks)
    ]
    features = DatasetVersion(kind=DatasetKind.FEATURES, name="bench", inputs_hash="bench")
    titles = {
        chunk.document_id: f"Notes on {TOPICS[int(chunk.document_id[4:]) % len(TOPICS)]}" for chunk in made
    }
    return Corpus(features=features, chunks=made, titles=titles)


def build_rows(data: Corpus, run: GenerationRun, job: DatasetJob) -> int:
    """The instruction rows of every chunk, as the builder makes them (passage view first)."""
    drops: Counter[str] = Counter()
    passages = usable_passages(data, job, drops)
    generated = generated_instructions(passages, run, job, drops)
    return len(passage_examples(passages, generated)) + len(template_views(passages, job))


def bench_builder_rows(model_path: str, chunks: int, batch_size: int) -> tuple[float, float, int]:
    """(builder seconds, raw generate seconds, rows made) over the same passages and prompts."""
    from twinops.datasets.text import truncate_words

    settings = Settings(home=Path(tempfile.mkdtemp()), base_model=model_path)
    data = corpus(chunks)
    job = DatasetJob(budget=None, batch_size=batch_size, instruction_share=1.0)
    generator = LocalGenerator(settings, batch_size=batch_size)
    # Load the model and import the checks' libraries (datasketch, scikit-learn) outside the timing.
    generator.generate(load_prompt(INSTRUCTION_PROMPT), [{"title": "", "text": "warm up"}])
    build_rows(corpus(3), GenerationRun(None, budget_seconds=0, batch_size=batch_size), job)
    ours, made = timed(
        lambda: build_rows(data, GenerationRun(generator, budget_seconds=None, batch_size=batch_size), job)
    )

    variables = [
        {"title": data.titles[c.document_id], "text": truncate_words(c.content, 80)} for c in data.chunks
    ]
    return ours, raw_generate_seconds(model_path, variables, batch_size), made


def bench_template_rows(chunks: int) -> tuple[float, int]:
    """(seconds, rows) of the template path alone: budget 0, the model never loaded."""
    data = corpus(chunks)
    return timed(lambda: build_rows(data, GenerationRun(None, budget_seconds=0, batch_size=8), DatasetJob()))


def timed(fn):
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def raw_generate_seconds(model_path: str, variables: list[dict[str, str]], batch_size: int) -> float:
    """Seconds of plain ``model.generate`` over the instruction prompts of ``variables``, in input
    order, ``batch_size`` at a time, every item to ``max_new_tokens`` (the raw library)."""
    import torch

    from twinops.models.loaders import load_causal_lm

    model, tokenizer = load_causal_lm(model_path)
    tokenizer.padding_side = "left"
    prompt = load_prompt(INSTRUCTION_PROMPT)
    texts = [
        tokenizer.apply_chat_template(prompt.messages(v), tokenize=False, add_generation_prompt=True)
        for v in variables
    ]

    def raw() -> None:
        for start in range(0, len(texts), batch_size):
            encoded = tokenizer(texts[start : start + batch_size], return_tensors="pt", padding=True)
            with torch.inference_mode():
                model.generate(
                    **encoded,
                    max_new_tokens=prompt.max_new_tokens,
                    do_sample=False,
                    pad_token_id=tokenizer.pad_token_id,
                )

    raw_seconds, _ = timed(raw)
    return raw_seconds


def bench_generation(model_path: str, items: int, batch_size: int) -> tuple[float, float]:
    settings = Settings(home=Path(tempfile.mkdtemp()), base_model=model_path)
    prompt = load_prompt(INSTRUCTION_PROMPT)
    variables = [{"title": "", "text": passage(n)} for n in range(items)]
    generator = LocalGenerator(settings, batch_size=batch_size)
    generator.generate(prompt, variables[:1])  # load the model outside the timing
    ours, _ = timed(lambda: generator.generate(prompt, variables))

    return ours, raw_generate_seconds(model_path, variables, batch_size)


def bench_near_duplicates(count: int) -> tuple[float, float]:
    from datasketch import MinHash, MinHashLSH

    instructions = [
        f"Explain what you learned about {passage(n)[:60]} in version {n % 50}" for n in range(count)
    ]
    examples = [InstructionExample(i, "answer " * 30, "d", str(n), "b") for n, i in enumerate(instructions)]
    ours, _ = timed(lambda: filter_instructions(examples, DatasetJob(max_instruction_words=80), Counter()))

    def raw() -> None:
        index = MinHashLSH(threshold=0.8, num_perm=64)
        for n, text in enumerate(instructions):
            signature = MinHash(num_perm=64, seed=1)
            for word in text.lower().split():
                signature.update(word.encode())
            if not index.query(signature):
                index.insert(str(n), signature)

    raw_seconds, _ = timed(raw)
    return ours, raw_seconds


def bench_store(rows: int) -> tuple[float, float]:
    from datasets import Dataset, DatasetDict

    data = [
        {
            "prompt": [{"role": "user", "content": f"Question {n}?"}],
            "completion": [{"role": "assistant", "content": passage(n)}],
            "document_id": f"doc-{n % 40}",
        }
        for n in range(rows)
    ]
    splits = {"train": data[: rows * 4 // 5], "test": data[rows * 4 // 5 :]}
    root = Path(tempfile.mkdtemp())
    ours, _ = timed(lambda: _write(root / "ours", DatasetKind.INSTRUCTION, splits))
    raw_seconds, _ = timed(
        lambda: DatasetDict({k: Dataset.from_list(v) for k, v in splits.items()}).save_to_disk(
            str(root / "raw")
        )
    )
    return ours, raw_seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="Tiny model and small inputs (seconds).")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    home = Path(os.environ.get("TWINOPS_HOME", ".twinops")).resolve()
    smollm = home / "models" / "smollm2-135m-instruct"
    if args.quick:
        from twinops.models.tiny import build_tiny_llama

        model = str(build_tiny_llama(smollm, Path(tempfile.mkdtemp()) / "tiny"))
    else:
        model = str(smollm)
    items, instructions, rows = (8, 400, 1000) if args.quick else (24, 2000, 5000)
    ours, raw, made = bench_builder_rows(model, items, 8)
    template_seconds, template_rows = bench_template_rows(800)
    print(f"{'rows per second':48} {'twinops':>10} {'raw':>10} {'ratio':>7}")
    print(
        f"{f'builder vs raw generate ({items} chunks, batch 8)':48} {items / ours:10.2f} {items / raw:10.2f} "
        f"{raw / ours:7.2f}"
    )
    print(f"{'  rows made by the builder (all views)':48} {made / ours:10.2f}")
    print(
        f"{f'template path ({template_rows} rows of 800 chunks)':48} {template_rows / template_seconds:10.1f}"
    )
    print()
    results = {
        f"local generation ({items} prompts, batch 8)": bench_generation(model, items, 8),
        f"near-duplicate filter ({instructions} instructions)": bench_near_duplicates(instructions),
        f"materialize HF + JSONL ({rows} rows)": bench_store(rows),
    }
    print(f"{'step':48} {'twinops s':>10} {'raw s':>10} {'ratio':>7}")
    for name, (ours, raw) in results.items():
        print(f"{name:48} {ours:10.3f} {raw:10.3f} {ours / raw:7.2f}")


if __name__ == "__main__":
    main()
