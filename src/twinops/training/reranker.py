"""Reranker training: two learned weights over cosine and term overlap, then a cross-encoder on top.

The model is ``twinops.models.rerank``'s scorer: ``logit(query, passage) + w * cosine + v *
lexical_overlap``. The cross-encoder starts from the bundled MiniLM encoder with a zero classifier
head, ``w`` at ``first_stage_weight`` and ``v`` at ``lexical_weight`` (0), so step 0 ranks exactly
as cosine retrieval does. First ``fusion_steps`` full-batch steps fit ``w`` and ``v`` on every
training list (the logits are all zero then, so this is the exact model, at the cost of features
only); then the cross-encoder trains as a correction on top, with ``w`` and ``v`` still learned.

Data (the reranker dataset, contract 4 plus ``candidates``): per query, the top-k chunks Qdrant
returned for it, in cosine order, and which one is the positive. That is the list serving reranks,
so the loss (softmax cross-entropy over the list, the positive as the target: hard negatives and
same-document siblings alike are negatives, as evaluation counts them) and the metrics are taken
over exactly that kind of list. Rows without ``candidates`` (older datasets) use positive + negatives.

Splits: queries of a share of the training *documents* form a validation split (by document, so
no sibling chunk leaks), and the dataset's test split holds the golden documents' queries. Both
report hit@5 and MRR of the reranker and of cosine order on the same lists, with bootstrap
intervals and the paired interval of the difference: ``val_mrr``, ``val_cosine_mrr``,
``val_mrr_delta_ci_low``, ... and the same with ``test_``.

A plain loop rather than ``CrossEncoderTrainer``: the score adds the first-stage cosine, a term no
sentence-transformers loss takes.
"""

from __future__ import annotations

import contextlib
import math
import random
import shutil

import yaml

from twinops.domain.hashing import content_hash
from twinops.domain.progress import report
from twinops.domain.stats import hit_and_reciprocal_rank
from twinops.domain.versions import DatasetKind
from twinops.infra.tracking import experiment_name, log_dataset_input, log_json, log_metrics, tracked_run
from twinops.models.rerank import (
    FIRST_STAGE_DIR,
    RerankerConfig,
    fused_scores,
    lexical_overlap,
    pick_device,
    write_config,
)
from twinops.models.resolve import resolve_model
from twinops.settings import Settings
from twinops.training.config import RerankerJob
from twinops.training.data import capped, load_dataset_version
from twinops.training.runs import (
    RESULT_FILE,
    TrainResult,
    is_main_process,
    plan_run_dir,
    publish,
    quiet_libraries,
    staging_dir,
)

HIT_K = 5
FUSION_LEARNING_RATE = 0.5  # Adam on two scalars, full batch: converges in a few hundred steps


def candidate_list(row: dict, limit: int, *, ensure_positive: bool) -> tuple[list[str], int | None]:
    """(passages in first-stage order, index of the positive or None) of a reranker row.

    ``ensure_positive`` (training) puts the positive in place of the last candidate when the first
    stage missed it, so every training list has a target; evaluation lists stay as retrieved.
    """
    candidates = row.get("candidates") or []
    if candidates:
        passages = [item["content"] for item in candidates][:limit]
        ids = [item["chunk_id"] for item in candidates][:limit]
        target = ids.index(row["chunk_id"]) if row.get("chunk_id") in ids else None
    else:
        passages = [row["positive"], *list(row.get("negatives") or [])][:limit]
        target = 0
    if target is None and ensure_positive:
        passages = [*passages[: limit - 1], row["positive"]]
        target = len(passages) - 1
    return passages, target


def split_validation(rows: list[dict], fraction: float, seed: int) -> tuple[list[dict], list[dict]]:
    """(fit, validation) by source document: all queries of a document land on one side."""
    if fraction <= 0 or len(rows) < 2:
        return rows, []

    def score(row: dict) -> float:
        key = row.get("document_id") or row.get("chunk_id") or row["query"]
        return int(content_hash("reranker-validation", seed, key)[:12], 16) / 16**12

    validation = [row for row in rows if score(row) < fraction]
    fit = [row for row in rows if score(row) >= fraction]
    if not fit:  # one document only: nothing to hold out
        return rows, []
    return fit, validation


def ranking_values(scores: list[float], target: int | None, k: int = HIT_K) -> tuple[float, float]:
    """(hit@k, reciprocal rank) of ``target`` when the list is sorted by ``scores`` (ties: list order)."""
    if target is None:
        return 0.0, 0.0
    order = sorted(range(len(scores)), key=lambda index: (-scores[index], index))
    return hit_and_reciprocal_rank([str(index) for index in order], str(target), k)


def list_metrics(prefix: str, reranked: list[tuple[float, float]], cosine: list[tuple[float, float]]) -> dict:
    """``{prefix}_hit_at_5``, ``_mrr``, cosine's, their intervals and the paired interval of Δ."""
    from twinops.domain.stats import interval, paired_difference_interval, value

    metrics: dict[str, float] = {f"{prefix}_queries": float(len(reranked))}
    if not reranked:
        return metrics
    for position, name in ((0, f"hit_at_{HIT_K}"), (1, "mrr")):
        ours = [pair[position] for pair in reranked]
        base = [pair[position] for pair in cosine]
        for label, values in ((f"{prefix}_{name}", ours), (f"{prefix}_cosine_{name}", base)):
            metrics[label] = value(name, values)
            metrics[f"{label}_ci_low"], metrics[f"{label}_ci_high"] = interval(name, values)
        low, high = paired_difference_interval(name, base, ours)
        metrics[f"{prefix}_{name}_delta_ci_low"], metrics[f"{prefix}_{name}_delta_ci_high"] = low, high
    return metrics


class _Scorer:
    """The trainable form of ``models.rerank.Reranker``: logits plus ``w`` x cosine plus ``v`` x overlap."""

    def __init__(self, start_model: str, job: RerankerJob, device: str) -> None:
        import torch
        from sentence_transformers import CrossEncoder, SentenceTransformer

        self.device = device
        self.max_length = job.trainer.max_length
        self.cross_encoder = CrossEncoder(
            start_model, num_labels=1, max_length=self.max_length, device=device
        )
        head = self.cross_encoder.model.classifier
        # A zero head scores every pair alike: the first ranking is the cosine order.
        torch.nn.init.zeros_(head.weight)
        torch.nn.init.zeros_(head.bias)
        self.embedder = SentenceTransformer(start_model, device=device)
        self.weight = torch.nn.Parameter(torch.tensor(float(job.first_stage_weight), device=device))
        self.lexical_weight = torch.nn.Parameter(torch.tensor(float(job.lexical_weight), device=device))

    def config(self) -> RerankerConfig:
        """The saved scorer's settings: what ``models.rerank.load_reranker`` scores with."""
        return RerankerConfig(
            first_stage_weight=float(self.weight.detach()),
            lexical_weight=float(self.lexical_weight.detach()),
            max_length=self.max_length,
        )

    def fuse(self, logits, item: dict):
        """The differentiable ``fused_scores`` of one prepared list."""
        import torch

        cosines = torch.tensor(item["cosines"], device=self.device)
        lexical = torch.tensor(item["lexical"], device=self.device)
        return logits.float() + self.weight * cosines + self.lexical_weight * lexical

    def cosines(self, query: str, passages: list[str]) -> list[float]:
        vectors = self.embedder.encode(
            [query, *passages], normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False
        )
        return [float(value) for value in vectors[1:] @ vectors[0]]

    def logits(self, queries: list[str], passages: list[str]):
        tokens = self.cross_encoder.tokenizer(
            queries,
            passages,
            truncation="only_second",
            max_length=self.max_length,
            padding=True,
            return_tensors="pt",
        ).to(self.device)
        return self.cross_encoder.model(**tokens).logits.view(-1)

    def scores(self, item: dict) -> list[float]:
        import torch

        with torch.no_grad():
            logits = self.logits([item["query"]] * len(item["passages"]), item["passages"])
        return fused_scores(logits.tolist(), item["cosines"], item["lexical"], self.config())


def _prepared(rows: list[dict], scorer: _Scorer, limit: int, *, training: bool) -> list[dict]:
    """Each usable row's list with its cosines; every distinct text is embedded once."""
    lists = []
    for row in rows:
        passages, target = candidate_list(row, limit, ensure_positive=training)
        if passages and not (training and (target is None or len(passages) < 2)):
            lists.append((row["query"], passages, target))
    texts = list(dict.fromkeys(text for query, passages, _ in lists for text in (query, *passages)))
    if not texts:
        return []
    vectors = scorer.embedder.encode(
        texts, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False, batch_size=64
    )
    index = {text: position for position, text in enumerate(texts)}
    return [
        {
            "query": query,
            "passages": passages,
            "target": target,
            "cosines": [float(vectors[index[text]] @ vectors[index[query]]) for text in passages],
            "lexical": lexical_overlap(query, passages),
        }
        for query, passages, target in lists
    ]


def _evaluate(prefix: str, prepared: list[dict], scorer: _Scorer) -> dict[str, float]:
    reranked, cosine = [], []
    for item in prepared:
        scores = scorer.scores(item)
        reranked.append(ranking_values(scores, item["target"]))
        cosine.append(ranking_values(item["cosines"], item["target"]))
    return list_metrics(prefix, reranked, cosine)


def _fit_fusion(job: RerankerJob, scorer: _Scorer, prepared: list[dict]) -> float | None:
    """Fit ``w`` and ``v`` on every list with the zero head (exactly the model then); the last loss."""
    import torch

    if job.fusion_steps <= 0 or not prepared:
        return None
    device = scorer.device
    width = max(len(item["passages"]) for item in prepared)

    def padded(key: str):  # one row per list; padding is masked out of the softmax below
        return torch.tensor(
            [item[key] + [0.0] * (width - len(item[key])) for item in prepared], device=device
        )

    cosines, lexical = padded("cosines"), padded("lexical")
    lengths = torch.tensor([len(item["passages"]) for item in prepared], device=device)
    padding = torch.arange(width, device=device).unsqueeze(0) >= lengths.unsqueeze(1)
    targets = torch.tensor([item["target"] for item in prepared], device=device)
    optimizer = torch.optim.Adam([scorer.weight, scorer.lexical_weight], lr=FUSION_LEARNING_RATE)
    loss = torch.tensor(0.0)
    for _ in range(job.fusion_steps):
        fused = scorer.weight * cosines + scorer.lexical_weight * lexical
        loss = torch.nn.functional.cross_entropy(fused.masked_fill(padding, float("-inf")), targets)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        with torch.no_grad():  # the score only counts agreement upwards: no negative weights
            scorer.weight.clamp_(min=0.0)
            scorer.lexical_weight.clamp_(min=0.0)
    return float(loss.detach())


def _fit(
    job: RerankerJob, scorer: _Scorer, prepared: list[dict], description: str
) -> tuple[int, list[float]]:
    import torch
    from transformers import get_linear_schedule_with_warmup

    spec = job.trainer
    per_step = spec.per_device_train_batch_size
    steps = (
        spec.max_steps if spec.max_steps > 0 else math.ceil(spec.num_train_epochs * len(prepared) / per_step)
    )
    warmup = int(spec.warmup_steps) if spec.warmup_steps >= 1 else int(spec.warmup_steps * steps)
    model = scorer.cross_encoder.model
    head = list(model.classifier.parameters())
    body = [param for param in model.parameters() if all(param is not own for own in head)]
    # The head starts at zero, so the body gets no gradient until the head has grown: it learns fast.
    optimizer = torch.optim.AdamW(
        [
            {"params": body, "lr": spec.learning_rate, "weight_decay": spec.weight_decay},
            {"params": head, "lr": job.head_learning_rate, "weight_decay": 0.0},
            {
                "params": [scorer.weight, scorer.lexical_weight],
                "lr": job.first_stage_weight_lr,
                "weight_decay": 0.0,
            },
        ]
    )
    schedule = get_linear_schedule_with_warmup(optimizer, warmup, steps)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if spec.bf16 and scorer.device == "cuda" else None
    order = random.Random(spec.seed)  # noqa: S311 - reproducible batches, not secrets
    losses: list[float] = []
    model.train()
    report(description, 0, steps)
    for step in range(1, steps + 1):
        batch = order.sample(prepared, min(per_step, len(prepared)))
        queries = [item["query"] for item in batch for _ in item["passages"]]
        passages = [passage for item in batch for passage in item["passages"]]
        with autocast if autocast is not None else contextlib.nullcontext():
            logits = scorer.logits(queries, passages)
        total = torch.tensor(0.0, device=scorer.device)
        start = 0
        for item in batch:  # lists differ in length: one softmax per query
            size = len(item["passages"])
            fused = scorer.fuse(logits[start : start + size], item)
            total = total + torch.nn.functional.cross_entropy(
                fused.unsqueeze(0), torch.tensor([item["target"]], device=scorer.device)
            )
            start += size
        loss = total / len(batch)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        optimizer.zero_grad()
        losses.append(float(loss.detach()))
        if step % spec.logging_steps == 0 or step == steps:
            weights = scorer.config()
            log_metrics(
                {
                    "loss": losses[-1],
                    "first_stage_weight": weights.first_stage_weight,
                    "lexical_weight": weights.lexical_weight,
                },
                step=step,
            )
        report(description, step, steps, f"loss={losses[-1]:.4f}")
    model.eval()
    return steps, losses


def train_reranker(job: RerankerJob, settings: Settings) -> TrainResult:
    """Train the reranker on ``job.dataset``; writes ``runs/reranker/<run>/model`` (a scorer folder)."""
    import torch

    quiet_libraries()
    setting = "the reranker config's `model`" if job.model else "TWINOPS_EMBEDDING_MODEL"
    start_model = resolve_model(job.model or settings.embedding_model, settings, setting=setting)
    data = load_dataset_version(job.dataset, DatasetKind.RERANKER, settings)
    train_rows = capped(data.train, job.trainer.max_train_samples)
    test_rows = capped(data.test, job.trainer.max_eval_samples)
    fit_rows, validation_rows = split_validation(list(train_rows), job.validation_fraction, job.trainer.seed)
    validation_rows = validation_rows[: job.trainer.max_eval_samples]  # None keeps them all

    run_name, final = plan_run_dir(job, settings, (start_model, data.version.id))
    main = is_main_process()
    staging = staging_dir(final) if main else final.with_name(final.name + ".partial")
    torch.manual_seed(job.trainer.seed)
    device = pick_device(job.trainer.device)
    scorer = _Scorer(start_model, job, device)
    fit = _prepared(fit_rows, scorer, job.candidates, training=True)
    validation = _prepared(validation_rows, scorer, job.candidates, training=False)
    test = _prepared(list(test_rows or []), scorer, job.candidates, training=False)
    params = {
        "job": job.model_dump(mode="json"),
        "start_model": start_model,
        "dataset_version_id": data.version.id,
        "device": device,
    }
    try:
        with tracked_run(
            job.stage,
            settings,
            run_name=run_name,
            params={**params, "train_queries": len(fit), "validation_queries": len(validation)},
            tags={"dataset_version_ids": data.version.id, "start_model": start_model},
        ) as run_id:
            log_dataset_input(data.version, train_rows, "train")
            if test_rows is not None:
                log_dataset_input(data.version, test_rows, "test")
            fusion_loss = _fit_fusion(job, scorer, fit)
            steps, losses = _fit(job, scorer, fit, f"reranker {run_name}") if fit else (0, [])
            weights = scorer.config()
            metrics: dict[str, float] = {
                "train_queries": float(len(fit)),
                "first_stage_weight": weights.first_stage_weight,
                "lexical_weight": weights.lexical_weight,
            }
            if fusion_loss is not None:
                metrics["fusion_loss"] = fusion_loss
            if losses:
                metrics["train_loss"] = sum(losses) / len(losses)
                metrics["final_loss"] = losses[-1]
            metrics.update(_evaluate("val", validation, scorer))
            metrics.update(_evaluate("test", test, scorer))
            log_metrics(metrics)
            if main:
                folder = staging / "model"
                scorer.cross_encoder.save_pretrained(str(folder))
                scorer.embedder.save(str(folder / FIRST_STAGE_DIR))
                write_config(folder, weights)
            result = TrainResult(
                stage=job.stage,
                run_name=run_name,
                run_dir=str(final),
                model_dir=str(final / "model"),
                base_model=start_model,
                dataset_version_ids=[data.version.id],
                metrics=metrics,
                steps=steps,
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
