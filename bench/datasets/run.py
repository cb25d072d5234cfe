"""Datasets benchmark: twinops' dataset steps against the raw libraries doing the same work.

1. Local generation: ``LocalGenerator`` (chat template, length-sorted batches, stop at newline)
   vs a plain ``model.generate`` loop over the same prompts in input order, same batch size.
   Uses the tiny random Llama with ``--quick``, else the bundled SmolLM2-135M.
2. Near-duplicate filtering: ``filter_instructions`` (length/refusal/boilerplate + MinHash LSH,
   verified by the MinHash estimate) vs raw datasketch LSH insert/query on the same strings.
3. Materialization: ``store._write`` (typed HF DatasetDict + JSONL per split, staged then renamed)
   vs raw ``Dataset.from_list(...).save_to_disk``.

    .venv/bin/python bench/datasets/run.py [--quick]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections import Counter
from pathlib import Path

from twinops.datasets.generators.local import LocalGenerator
from twinops.datasets.instruction import InstructionExample, filter_instructions
from twinops.datasets.jobs import DatasetJob
from twinops.datasets.prompts import INSTRUCTION_PROMPT, load_prompt
from twinops.domain import DatasetKind
from twinops.infra.dataset_store import _write
from twinops.settings import Settings

TOPICS = ["databases", "small models", "data versioning", "Kubernetes quotas", "writing style", "GPU pools"]


def passage(n: int) -> str:
    topic = TOPICS[n % len(TOPICS)]
    return (
        f"Note {n} on {topic}. I learned the hard way that {topic} reward boring, repeatable choices. "
        f"Measure first, write the decision down, and change one thing at a time when {topic} misbehave."
    )


def timed(fn):
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def bench_generation(model_path: str, items: int, batch_size: int) -> tuple[float, float]:
    import torch

    from twinops.models.loaders import load_causal_lm

    settings = Settings(home=Path(tempfile.mkdtemp()), base_model=model_path)
    prompt = load_prompt(INSTRUCTION_PROMPT)
    variables = [{"title": "", "text": passage(n)} for n in range(items)]
    generator = LocalGenerator(settings, batch_size=batch_size)
    generator.generate(prompt, variables[:1])  # load the model outside the timing
    ours, _ = timed(lambda: generator.generate(prompt, variables))

    model, tokenizer = load_causal_lm(model_path)
    tokenizer.padding_side = "left"
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
    return ours, raw_seconds


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
