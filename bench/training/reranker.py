"""Reranker bench: does the trained reranker beat cosine retrieval on a corpus's held-out golden questions?

On whatever corpus TWINOPS_HOME holds (after `twinops etl` and `twinops features`): builds the
datasets (extractive questions: fast and deterministic), trains the reranker, then ranks every
golden question's top-12 Qdrant candidates by cosine and by the reranker and prints hit@5 and MRR of
both with 95% bootstrap intervals and the paired interval of the gain. The evidence table of docs/training.md
comes from this script on the demo corpus and on MLflow's own documentation (the .md files shipped
in the mlflow wheel, a corpus nobody here wrote).

    TWINOPS_HOME=... .venv/bin/python bench/training/reranker.py [--steps 30] [--golden-cap 300]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def main() -> int:
    from twinops.datasets.builder import build_datasets
    from twinops.datasets.jobs import DatasetJob
    from twinops.domain.stats import format_interval, paired_difference_interval
    from twinops.evaluation.data import load_golden
    from twinops.evaluation.retrieval import retrieval_scores
    from twinops.settings import get_settings
    from twinops.training import RerankerJob, TrainerSpec, train_reranker

    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--steps", type=int, default=30, help="Training steps (2 queries x 12 candidates).")
    parser.add_argument("--max-length", type=int, default=128, help="Tokens per (query, passage).")
    parser.add_argument("--golden-cap", type=int, default=0, help="Rank at most this many golden rows.")
    parser.add_argument("--reranker-dataset", default=None, help="Reuse a reranker DatasetVersion id.")
    parser.add_argument("--golden-dataset", default=None, help="Reuse a golden DatasetVersion id.")
    args = parser.parse_args()

    settings = get_settings()
    started = time.perf_counter()
    if args.reranker_dataset and args.golden_dataset:
        versions = {"reranker": args.reranker_dataset, "golden": args.golden_dataset}
    else:
        job = DatasetJob(generator="extractive", log_to_mlflow=False, preference=False)
        summary = build_datasets(job, settings)
        versions = summary.versions
        print(f"datasets {json.dumps(summary.split_sizes)} in {time.perf_counter() - started:.0f} s")
    spec = TrainerSpec(
        learning_rate=5e-5,
        max_steps=args.steps,
        per_device_train_batch_size=2,
        max_length=args.max_length,
        warmup_steps=0.1,
        logging_steps=5,
        device="cpu",
        max_eval_samples=args.golden_cap or None,
    )
    started = time.perf_counter()
    result = train_reranker(RerankerJob(dataset=versions["reranker"], trainer=spec, progress=False), settings)
    print(f"trained {result.steps} steps in {time.perf_counter() - started:.0f} s: {result.model_dir}")
    weights = {name: round(result.metrics[name], 3) for name in ("first_stage_weight", "lexical_weight")}
    print(
        f"learned weights {weights}; validation MRR {result.metrics.get('val_mrr', float('nan')):.3f}"
        f" (cosine {result.metrics.get('val_cosine_mrr', float('nan')):.3f})"
    )
    rows, label = load_golden(versions["golden"], settings)
    if args.golden_cap and len(rows) > args.golden_cap:
        rows = random.Random(0).sample(rows, args.golden_cap)  # a reproducible sample
    started = time.perf_counter()
    scored = retrieval_scores(settings, rows, {"reranker": result.model_dir}, k=5, candidates=12)
    if scored is None:
        print("no twin_chunks collection: run `twinops features` first", file=sys.stderr)
        return 2
    cosine, reranker = scored
    print(f"golden {label}: {len(rows)} questions ranked in {time.perf_counter() - started:.0f} s")
    for metric in ("golden_hit_at_5", "golden_mrr"):
        low, high = paired_difference_interval(
            metric, cosine.per_question[metric], reranker.per_question[metric]
        )
        plain = format_interval(cosine.metrics[metric], cosine.intervals[metric])
        print(
            f"{metric.removeprefix('golden_'):<9} cosine {plain:<24}"
            f" reranked {format_interval(reranker.metrics[metric], reranker.intervals[metric]):<24}"
            f" gain 95% CI [{low:.3g}, {high:.3g}]"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
