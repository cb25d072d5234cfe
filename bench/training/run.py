"""Training benchmark: SFT steps per second through twinops vs plain transformers ``Trainer``.

Both sides train the same LoRA adapter (same rank, targets, seed, batch, max length, optimizer)
on the same prompt/completion rows for the same number of steps, loss on the completion only:

- twinops: ``build_sft_trainer`` (TRL ``SFTTrainer``, the model's chat template, completion-only
  loss) with the rich progress callback, exactly as ``train_sft`` builds it;
- raw: ``peft.get_peft_model`` + ``transformers.Trainer`` on rows tokenized by hand with the same
  chat template, the prompt masked with -100, and a padding collator.

Dataset preparation is outside the timed region on both sides; one warm-up step runs first.
The ratio twinops/raw in steps per second shows the overhead of the TRL path (≈1.0 = none).
Expect it below 1, most on small models: TRL computes the loss through a chunked "fused LM head"
(log-probs without materialising the full logits: a memory saver on GPU, slower on CPU) and also
per-token entropy and top-1 accuracy every step (logged as ``entropy`` / ``mean_token_accuracy``).
Measured here on 2 busy cores: ≈0.45 on the tiny Llama (vocabulary-bound), ≈0.8 on SmolLM2-135M.
The GPTQ half of the issue's benchmark lives in ``bench/quantize``.

Then, per run found under TWINOPS_HOME (``make run`` or the step commands leave them there): the
newest reranker run's hit@5 and MRR against cosine order on the same top-k Qdrant lists (its
validation and golden-test queries, 95% bootstrap intervals, the paired interval of the gain), and
the newest evaluation's retrieval table and seconds per model. ``--runs-only`` prints just those.

    .venv/bin/python bench/training/run.py [--quick] [--real] [--steps N] [--runs-only]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from twinops.models.tiny import build_tiny_llama
from twinops.settings import Settings
from twinops.training.config import SFTJob, TrainerSpec
from twinops.training.runs import load_trainable_lm, lora_config, quiet_libraries, trainer_kwargs
from twinops.training.sft import SFT_COLUMNS, build_sft_trainer

TOPICS = ["gardening", "sourdough", "cycling", "chess", "astronomy", "woodwork", "jazz", "hiking"]


def rows(count: int) -> list[dict]:
    return [
        {
            "prompt": [{"role": "user", "content": f"Write a paragraph about {TOPICS[i % 8]} (note {i})."}],
            "completion": [
                {
                    "role": "assistant",
                    "content": f"{TOPICS[i % 8].capitalize()} taught me patience. Every season, note {i}, "
                    "I start again with small steps and write down what worked.",
                }
            ],
        }
        for i in range(count)
    ]


def raw_trainer(model_path: str, job: SFTJob, data: list[dict], output: Path):
    """The same LoRA SFT with plain transformers: hand tokenization, -100 on the prompt."""
    import torch
    from datasets import Dataset
    from peft import get_peft_model
    from transformers import PrinterCallback, Trainer, TrainingArguments

    model, tokenizer = load_trainable_lm(model_path)
    model = get_peft_model(model, lora_config(job.lora))

    def encode(row: dict) -> dict:
        prompt_ids = tokenizer.apply_chat_template(row["prompt"], add_generation_prompt=True, tokenize=True)
        full_ids = tokenizer.apply_chat_template(row["prompt"] + row["completion"], tokenize=True)
        prompt_ids = list(prompt_ids["input_ids"] if hasattr(prompt_ids, "keys") else prompt_ids)
        full_ids = list(full_ids["input_ids"] if hasattr(full_ids, "keys") else full_ids)
        full_ids = full_ids[: job.trainer.max_length]
        labels = [-100] * min(len(prompt_ids), len(full_ids)) + full_ids[len(prompt_ids) :]
        return {"input_ids": full_ids, "labels": labels}

    dataset = Dataset.from_list([encode(row) for row in data])

    def collate(batch: list[dict]) -> dict:
        width = max(len(item["input_ids"]) for item in batch)
        pad = tokenizer.pad_token_id
        ids = [item["input_ids"] + [pad] * (width - len(item["input_ids"])) for item in batch]
        labels = [item["labels"] + [-100] * (width - len(item["labels"])) for item in batch]
        mask = [[1] * len(item["input_ids"]) + [0] * (width - len(item["input_ids"])) for item in batch]
        return {
            "input_ids": torch.tensor(ids),
            "labels": torch.tensor(labels),
            "attention_mask": torch.tensor(mask),
        }

    kwargs = trainer_kwargs(job.trainer, output)
    trainer = Trainer(
        model=model,
        args=TrainingArguments(**kwargs, remove_unused_columns=False),
        train_dataset=dataset,
        data_collator=collate,
    )
    trainer.remove_callback(PrinterCallback)
    return trainer


def twinops_trainer(model_path: str, job: SFTJob, data: list[dict], output: Path):
    from datasets import Dataset
    from transformers import PrinterCallback

    from twinops.training.callbacks import TrainerProgressCallback

    model, tokenizer = load_trainable_lm(model_path)
    dataset = Dataset.from_list(data).select_columns(list(SFT_COLUMNS))
    trainer = build_sft_trainer(
        job,
        model,
        tokenizer,
        train=dataset,
        test=None,
        output_dir=output,
        callbacks=[TrainerProgressCallback("twinops SFT")],
    )
    trainer.remove_callback(PrinterCallback)
    return trainer


def steps_per_second(trainer, steps: int) -> float:
    trainer.args.max_steps = 1  # warm-up: allocator, kernels, dataloader workers
    trainer.train()
    trainer.args.max_steps = steps
    started = time.perf_counter()
    trainer.train()
    return steps / (time.perf_counter() - started)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="Fewer steps (CI smoke).")
    parser.add_argument(
        "--real", action="store_true", help="The bundled SmolLM2-135M instead of the tiny Llama."
    )
    parser.add_argument("--steps", type=int, default=None, help="Timed optimizer steps per side.")
    parser.add_argument("--runs-only", action="store_true", help="Only the reranker/evaluation lines.")
    args = parser.parse_args()
    if args.runs_only:
        print_run_lines(Settings(home=Path(os.environ.get("TWINOPS_HOME", ".twinops"))))
        return 0

    import torch

    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    quiet_libraries()
    settings = Settings(home=Path(os.environ.get("TWINOPS_HOME", ".twinops")))
    bundled = settings.models_dir / "smollm2-135m-instruct"
    if not (bundled / "config.json").exists():
        print(
            f"bundled model missing at {bundled}: run `twinops models pull` (or `make models`)",
            file=sys.stderr,
        )
        return 2
    steps = args.steps or (3 if args.quick or args.real else 20)
    # The real model costs ~10 s per step on 2 busy cores at this size; keep --real within minutes.
    batch, length = (2, 96) if args.real else (4, 128)
    spec = TrainerSpec(max_steps=steps, max_length=length, per_device_train_batch_size=batch, device="cpu")
    job = SFTJob(trainer=spec, progress=False)
    data = rows(batch * (steps + 1))

    with tempfile.TemporaryDirectory() as scratch:
        scratch_dir = Path(scratch)
        model_path = str(bundled) if args.real else str(build_tiny_llama(bundled, scratch_dir / "tiny"))
        label = "SmolLM2-135M" if args.real else "tiny random Llama (2 layers, 64 wide)"
        print(
            f"SFT with LoRA r={job.lora.r} on {label}: batch {spec.per_device_train_batch_size}, "
            f"max length {spec.max_length}, {steps} timed steps, {torch.get_num_threads()} threads"
        )
        torch.manual_seed(0)
        ours = steps_per_second(twinops_trainer(model_path, job, data, scratch_dir / "ours"), steps)
        torch.manual_seed(0)
        raw = steps_per_second(raw_trainer(model_path, job, data, scratch_dir / "raw"), steps)

    print(f"{'path':<34}{'steps/s':>10}")
    print(f"{'twinops (TRL SFTTrainer + LoRA)':<34}{ours:>10.2f}")
    print(f"{'raw transformers Trainer + LoRA':<34}{raw:>10.2f}")
    print(f"overhead ratio (twinops / raw steps per second): {ours / raw:.2f}")
    print_run_lines(settings)
    return 0


def _newest(pattern: str, root: Path) -> Path | None:
    found = sorted(root.glob(pattern), key=lambda path: path.stat().st_mtime)
    return found[-1] if found else None


def _with_ci(metrics: dict, name: str) -> str:
    from twinops.domain.stats import format_interval

    bounds = (metrics.get(f"{name}_ci_low"), metrics.get(f"{name}_ci_high"))
    return format_interval(metrics.get(name), None if None in bounds else bounds)


def print_run_lines(settings: Settings) -> None:
    """Reranker vs cosine (newest reranker run) and the newest evaluation, with intervals."""
    import json

    from twinops.domain.stats import format_interval

    result = _newest("runs/reranker/*/train_result.json", settings.home)
    if result is None:
        print(f"reranker: no run under {settings.home / 'runs' / 'reranker'}")
    else:
        metrics = json.loads(result.read_text())["metrics"]
        print(
            f"reranker run {result.parent.name} "
            f"(first-stage weight {metrics.get('first_stage_weight', 0):.3g}):"
        )
        for split in ("val", "test"):
            if f"{split}_mrr" not in metrics:
                continue
            print(f"  {split} ({int(metrics[f'{split}_queries'])} queries, top-k Qdrant lists):")
            for name in ("hit_at_5", "mrr"):
                gain = (
                    metrics.get(f"{split}_{name}_delta_ci_low"),
                    metrics.get(f"{split}_{name}_delta_ci_high"),
                )
                print(
                    f"    {name:<9} reranked {_with_ci(metrics, f'{split}_{name}'):<24} cosine "
                    f"{_with_ci(metrics, f'{split}_cosine_{name}'):<24} "
                    f"gain 95% CI [{gain[0]:.3g}, {gain[1]:.3g}]"
                )
    report = _newest("reports/evaluation/*/report.json", settings.home)
    if report is None:
        print(f"evaluation: no report under {settings.reports_dir / 'evaluation'}")
        return
    data = json.loads(report.read_text())
    print(
        f"evaluation {report.parent.name} on {data['golden']} "
        f"({data['questions']} rows, device {data.get('device')}):"
    )
    for scores in data.get("retrieval", []):
        cells = [
            f"{metric.removeprefix('golden_')} {format_interval(value, scores['intervals'].get(metric))}"
            for metric, value in scores["metrics"].items()
        ]
        print(f"  ranker {scores['name']:<11} " + "  ".join(cells))
    for scores in [*data.get("models", []), *data.get("retrieval", [])]:
        seconds = scores.get("seconds")
        backend = f" ({scores['backend']})" if scores.get("backend") else ""
        print(
            f"  time {scores['name']:<11} {seconds:8.1f} s{backend}"
            if seconds
            else f"  time {scores['name']}: -"
        )


if __name__ == "__main__":
    sys.exit(main())
