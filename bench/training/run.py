"""Training benchmark: SFT steps per second through twinops vs a plain transformers ``Trainer``.

Both sides train the same LoRA adapter (same rank, targets, dropout, seed, batch, max length,
optimizer) on the same prompt/completion rows, loss on the completion only:

- twinops: ``build_sft_trainer`` (TRL's ``SFTTrainer`` minus its per-step entropy and token
  accuracy: the model's chat template, completion-only loss) with the progress callback, exactly as
  ``train_sft`` builds it;
- raw: ``peft.get_peft_model`` + ``transformers.Trainer`` on rows tokenized by hand with the same
  chat template, the prompt masked with -100, a padding collator, and the model's KV cache off (a
  cache nobody reads while training; TRL turns it off too).

Like with like: before timing, the two prepared datasets are compared row by row (token ids and
loss labels must be identical, so every step feeds both sides the same tokens); the batches come in
the same order (same seed). Dataset preparation and each ``train()``'s set-up and first step are
outside the timed region: a callback stamps each optimizer step's end (the interval from one end
to the next holds the batch, forward, backward, optimizer, callbacks and the step's log). The sides
alternate for ``--rounds`` rounds on the same trainers, so load from elsewhere on a shared machine
hits both alike; steps/s is 1 / the median step of a side, and the ratio twinops/raw of those is
printed (≈1.0 = no overhead).
It runs on the tiny random Llama (vocabulary-bound: 64 wide, 49k vocabulary) and on the bundled
SmolLM2-135M (``--model`` picks one). The GPTQ half of the issue's benchmark lives in
``bench/quantize``.

Then, per run found under TWINOPS_HOME (``make run`` or the step commands leave them there): the
newest reranker run's hit@5 and MRR against cosine order on the same top-k Qdrant lists (its
validation and golden-test queries, 95% bootstrap intervals, the paired interval of the gain), and
the newest evaluation's retrieval table and seconds per model. ``--runs-only`` prints just those.

    .venv/bin/python bench/training/run.py [--quick] [--model tiny|smollm2|both] [--steps N]
        [--rounds R] [--runs-only]
"""

from __future__ import annotations

import argparse
import itertools
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from transformers import TrainerCallback

from twinops.models.tiny import build_tiny_llama
from twinops.settings import Settings
from twinops.training.config import SFTJob, TrainerSpec
from twinops.training.runs import load_trainable_lm, lora_config, quiet_libraries, trainer_kwargs
from twinops.training.sft import SFT_COLUMNS, build_sft_trainer

TOPICS = ["gardening", "sourdough", "cycling", "chess", "astronomy", "woodwork", "jazz", "hiking"]
MODELS = {"tiny": "tiny random Llama (2 layers, 64 wide)", "smollm2": "SmolLM2-135M"}
BATCH, MAX_LENGTH, WARMUP_STEPS = 4, 128, 1


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


def raw_trainer(model_path: str, job: SFTJob, data: list[dict], output: Path, callbacks=()):
    """The same LoRA SFT with plain transformers: hand tokenization, -100 on the prompt."""
    import torch
    from datasets import Dataset
    from peft import get_peft_model
    from transformers import PrinterCallback, Trainer, TrainingArguments

    model, tokenizer = load_trainable_lm(model_path)
    model.config.use_cache = False  # no KV cache in training, as TRL's compute_loss asks
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
        callbacks=list(callbacks),
    )
    trainer.remove_callback(PrinterCallback)
    return trainer


def twinops_trainer(model_path: str, job: SFTJob, data: list[dict], output: Path, callbacks=()):
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
        callbacks=[TrainerProgressCallback("twinops SFT"), *callbacks],
    )
    trainer.remove_callback(PrinterCallback)
    return trainer


class StepClock(TrainerCallback):
    """Stamps the end of every optimizer step (after the optimizer, before that step's log)."""

    def __init__(self) -> None:
        self.ends: list[float] = []

    def on_train_begin(self, args, state, control, **kwargs):
        self.ends = []

    def on_step_end(self, args, state, control, **kwargs):
        self.ends.append(time.perf_counter())


def timed_step_seconds(trainer, clock: StepClock, steps: int) -> list[float]:
    """One ``train()`` of warm-up + ``steps`` steps: the seconds of each step after the warm-up."""
    trainer.args.max_steps = WARMUP_STEPS + steps
    trainer.train()
    ends = clock.ends[WARMUP_STEPS - 1 :]
    return [later - earlier for earlier, later in itertools.pairwise(ends)]


def same_tokens(ours, raw) -> tuple[int, int]:
    """(tokens, loss tokens) over the rows, after checking both sides prepared identical rows."""
    for name in ("input_ids", "labels"):
        if ours.train_dataset[name] != raw.train_dataset[name]:
            sys.exit(f"twinops and raw prepared different {name}: the comparison would not be like with like")
    labels = raw.train_dataset["labels"]
    return sum(map(len, labels)), sum(label != -100 for row in labels for label in row)


def compare(model_path: str, label: str, *, steps: int, rounds: int, scratch: Path) -> float:
    import torch

    spec = TrainerSpec(
        max_steps=WARMUP_STEPS + steps, max_length=MAX_LENGTH, per_device_train_batch_size=BATCH, device="cpu"
    )
    job = SFTJob(trainer=spec, progress=False)
    data = rows(BATCH * (WARMUP_STEPS + steps))
    clocks = {"twinops": StepClock(), "raw": StepClock()}
    torch.manual_seed(0)
    ours = twinops_trainer(model_path, job, data, scratch / "ours", callbacks=[clocks["twinops"]])
    torch.manual_seed(0)
    raw = raw_trainer(model_path, job, data, scratch / "raw", callbacks=[clocks["raw"]])
    tokens, loss_tokens = same_tokens(ours, raw)
    print(
        f"\nSFT with LoRA r={job.lora.r} on {label}: batch {BATCH}, max length {MAX_LENGTH}, "
        f"{tokens / len(data):.0f} tokens a row ({loss_tokens / len(data):.0f} in the loss), "
        f"identical on both sides; {WARMUP_STEPS} warm-up + {steps} timed steps x {rounds} rounds, "
        f"{torch.get_num_threads()} threads"
    )
    seconds: dict[str, list[float]] = {"twinops": [], "raw": []}
    for _ in range(rounds):
        for name, trainer in (("twinops", ours), ("raw", raw)):
            seconds[name] += timed_step_seconds(trainer, clocks[name], steps)
    # The median step: a burst of load from elsewhere lengthens a few steps, not the median.
    speed = {name: 1 / statistics.median(each) for name, each in seconds.items()}
    print(f"{'path':<34}{'steps/s (1 / median step)':>27}{'fastest step':>14}{'slowest':>9}")
    for name, title in (
        ("twinops", "twinops (TRL SFTTrainer + LoRA)"),
        ("raw", "raw transformers Trainer + LoRA"),
    ):
        each = seconds[name]
        print(f"{title:<34}{speed[name]:>27.2f}{min(each):>13.2f}s{max(each):>8.2f}s")
    ratio = speed["twinops"] / speed["raw"]
    print(f"overhead ratio on {label} (twinops / raw steps per second): {ratio:.2f}")
    # What the code costs when nothing else runs: the fastest steps (timeit's estimator).
    print(f"  on the fastest step of each side: {min(seconds['raw']) / min(seconds['twinops']):.2f}")
    return ratio


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="Fewer steps and one round (CI smoke).")
    parser.add_argument("--model", choices=[*MODELS, "both"], default="both", help="Which model(s).")
    parser.add_argument("--steps", type=int, default=None, help="Timed optimizer steps per round and side.")
    parser.add_argument("--rounds", type=int, default=None, help="Interleaved rounds (twinops, raw).")
    parser.add_argument("--runs-only", action="store_true", help="Only the reranker/evaluation lines.")
    args = parser.parse_args()
    settings = Settings(home=Path(os.environ.get("TWINOPS_HOME", ".twinops")))
    if args.runs_only:
        print_run_lines(settings)
        return 0

    import torch

    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    quiet_libraries()
    bundled = settings.models_dir / "smollm2-135m-instruct"
    if not (bundled / "config.json").exists():
        print(
            f"bundled model missing at {bundled}: run `twinops models pull` (or `make models`)",
            file=sys.stderr,
        )
        return 2
    rounds = args.rounds or (1 if args.quick else 3)
    ratios = {}
    with tempfile.TemporaryDirectory() as scratch:
        scratch_dir = Path(scratch)
        for name in MODELS if args.model == "both" else [args.model]:
            # SmolLM2 costs seconds per step on 2 shared cores: fewer steps keep it within minutes.
            steps = args.steps or (2 if args.quick else 10 if name == "tiny" else 4)
            path = str(bundled) if name == "smollm2" else str(build_tiny_llama(bundled, scratch_dir / "tiny"))
            ratios[name] = compare(path, MODELS[name], steps=steps, rounds=rounds, scratch=scratch_dir / name)
    print("\n" + "  ".join(f"{MODELS[name]}: {ratio:.2f}" for name, ratio in ratios.items()))
    print(f"load average meanwhile (1 min): {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
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
