"""Reranker: a sentence-transformers ``CrossEncoder`` initialised from the bundled MiniLM encoder
and fine-tuned on the reranker dataset (no pretrained cross-encoder is available offline).

Each (query, positive, negatives) row becomes labelled pairs: (query, positive) → 1 and
(query, negative) → 0, trained with binary cross-entropy. The test split is scored as a ranking
task: the positive among its negatives, giving ``eval_mrr`` and ``eval_hit_at_1``.
"""

from __future__ import annotations

import shutil
from typing import Any

import yaml

from twinops.domain.versions import DatasetKind
from twinops.models.resolve import resolve_model
from twinops.settings import Settings
from twinops.training.callbacks import MlflowMetricsCallback, RichProgressCallback
from twinops.training.config import RerankerJob
from twinops.training.data import capped, load_dataset_version
from twinops.training.runs import (
    RESULT_FILE,
    TrainResult,
    final_loss,
    is_main_process,
    plan_run_dir,
    publish,
    quiet_libraries,
    staging_dir,
    trainer_kwargs,
)
from twinops.training.tracking import experiment_name, log_dataset_input, log_json, log_metrics, tracked_run


def labelled_pairs(rows: Any, negatives_per_query: int | None = None) -> dict[str, list]:
    """Columns ``query``, ``passage``, ``label`` (1.0 positive, 0.0 negative) from reranker rows."""
    pairs: dict[str, list] = {"query": [], "passage": [], "label": []}
    for row in rows:
        negatives = list(row["negatives"] or [])[:negatives_per_query]
        for passage, label in [(row["positive"], 1.0), *((negative, 0.0) for negative in negatives)]:
            pairs["query"].append(row["query"])
            pairs["passage"].append(passage)
            pairs["label"].append(label)
    return pairs


def ranking_metrics(model: Any, rows: Any, batch_size: int = 32) -> dict[str, float]:
    """MRR and hit@1 of each row's positive among its negatives, as scored by ``model``."""
    reciprocal_ranks = []
    for row in rows:
        candidates = [row["positive"], *(row["negatives"] or [])]
        scores = model.predict([(row["query"], c) for c in candidates], batch_size=batch_size)
        rank = 1 + sum(1 for score in scores[1:] if score > scores[0])
        reciprocal_ranks.append(1.0 / rank)
    if not reciprocal_ranks:
        return {}
    return {
        "eval_mrr": sum(reciprocal_ranks) / len(reciprocal_ranks),
        "eval_hit_at_1": sum(1.0 for rr in reciprocal_ranks if rr == 1.0) / len(reciprocal_ranks),
    }


def train_reranker(job: RerankerJob, settings: Settings) -> TrainResult:
    """Fine-tune a CrossEncoder on ``job.dataset``; writes ``runs/reranker/<run>/model``."""
    import torch
    from datasets import Dataset
    from sentence_transformers.cross_encoder import (
        CrossEncoder,
        CrossEncoderTrainer,
        CrossEncoderTrainingArguments,
    )
    from sentence_transformers.cross_encoder.losses import BinaryCrossEntropyLoss
    from transformers import PrinterCallback

    quiet_libraries()
    setting = "the reranker config's `model`" if job.model else "TWINOPS_EMBEDDING_MODEL"
    start_model = resolve_model(job.model or settings.embedding_model, settings, setting=setting)
    data = load_dataset_version(job.dataset, DatasetKind.RERANKER, settings)
    train_rows = capped(data.train, job.trainer.max_train_samples)
    test_rows = capped(data.test, job.trainer.max_eval_samples)
    train = Dataset.from_dict(labelled_pairs(train_rows, job.negatives_per_query))

    run_name, final = plan_run_dir(job, settings, (start_model, data.version.id))
    main = is_main_process()
    staging = staging_dir(final) if main else final.with_name(final.name + ".partial")
    torch.manual_seed(job.trainer.seed)
    device = "cpu" if job.trainer.device == "cpu" or not torch.cuda.is_available() else "cuda"
    # num_labels=1: one relevance logit; the classifier head on top of MiniLM starts random.
    model = CrossEncoder(start_model, num_labels=1, max_length=job.trainer.max_length, device=device)
    callbacks: list[Any] = [MlflowMetricsCallback()]
    if job.progress:
        callbacks.append(RichProgressCallback(f"reranker {run_name}"))
    params = {
        "job": job.model_dump(mode="json"),
        "start_model": start_model,
        "dataset_version_id": data.version.id,
    }
    try:
        with tracked_run(
            job.stage,
            settings,
            run_name=run_name,
            params={**params, "train_pairs": len(train)},
            tags={"dataset_version_ids": data.version.id, "start_model": start_model},
        ) as run_id:
            log_dataset_input(data.version, train_rows, "train")
            if test_rows is not None:
                log_dataset_input(data.version, test_rows, "test")
            kwargs = trainer_kwargs(job.trainer, staging / "trainer")
            kwargs.pop("activation_checkpointing_kwargs")
            trainer = CrossEncoderTrainer(
                model=model,
                args=CrossEncoderTrainingArguments(**kwargs),
                train_dataset=train,
                loss=BinaryCrossEntropyLoss(model),
                callbacks=callbacks,
            )
            trainer.remove_callback(PrinterCallback)
            output = trainer.train()
            metrics = {"train_loss": float(output.training_loss), "train_pairs": float(len(train))}
            last = final_loss(trainer.state.log_history)
            if last is not None:
                metrics["final_loss"] = last
            if test_rows is not None and len(test_rows):
                metrics.update(ranking_metrics(model, test_rows, job.trainer.per_device_eval_batch_size))
            log_metrics(metrics)
            if main:
                model.save_pretrained(str(staging / "model"))
            result = TrainResult(
                stage=job.stage,
                run_name=run_name,
                run_dir=str(final),
                model_dir=str(final / "model"),
                base_model=start_model,
                dataset_version_ids=[data.version.id],
                metrics=metrics,
                steps=int(trainer.state.global_step),
                mlflow_run_id=run_id,
                mlflow_experiment=experiment_name(job.stage),
            )
            (staging / "job.yaml").write_text(yaml.safe_dump(job.model_dump(mode="json"), sort_keys=False))
            (staging / RESULT_FILE).write_text(result.model_dump_json(indent=2))
            log_json(result.model_dump(mode="json"), RESULT_FILE)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    publish(staging, final)
    return result
