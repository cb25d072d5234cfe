"""Cross-encoder fine-tuning from the bundled MiniLM on a handful of reranker pairs."""

from __future__ import annotations

from pathlib import Path

from twinops.domain.versions import DatasetKind
from twinops.training import RerankerJob, TrainerSpec, train_reranker
from twinops.training.reranker import labelled_pairs


def test_rows_become_labelled_pairs(dataset_rows) -> None:
    rows = dataset_rows[DatasetKind.RERANKER](2)
    pairs = labelled_pairs(rows)
    assert pairs["label"] == [1.0, 0.0, 0.0, 1.0, 0.0, 0.0]
    assert pairs["passage"][0] == rows[0]["positive"] and pairs["query"][2] == rows[0]["query"]
    assert labelled_pairs(rows, negatives_per_query=1)["label"] == [1.0, 0.0, 1.0, 0.0]


def test_reranker_trains_saves_and_tracks(training_settings, make_dataset, bundled_models_dir: Path) -> None:
    from mlflow import MlflowClient
    from sentence_transformers.cross_encoder import CrossEncoder

    dataset = make_dataset(DatasetKind.RERANKER)
    job = RerankerJob(
        model=str(bundled_models_dir / "all-minilm-l6-v2"),
        trainer=TrainerSpec(max_steps=3, per_device_train_batch_size=8, max_length=64, device="cpu"),
    )
    result = train_reranker(job, training_settings)

    assert Path(result.run_dir).parent == training_settings.home / "runs" / "reranker"
    assert result.base_model.endswith("all-minilm-l6-v2") and result.dataset_version_ids == [dataset.id]
    assert result.steps == 3 and result.metrics["train_pairs"] == 24.0
    assert 0.0 < result.metrics["eval_mrr"] <= 1.0 and 0.0 <= result.metrics["eval_hit_at_1"] <= 1.0
    model = CrossEncoder(result.model_dir, device="cpu")
    scores = model.predict([("what about chess?", "My take on chess."), ("what about chess?", "Taxes.")])
    assert len(scores) == 2
    run = MlflowClient(training_settings.mlflow_tracking_uri).get_run(result.mlflow_run_id)
    assert run.data.tags["dataset_version_ids"] == dataset.id and "eval_mrr" in run.data.metrics
