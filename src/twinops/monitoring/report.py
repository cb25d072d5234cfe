"""The offline drift report: a reference against a current set, as HTML, JSON and an MLflow run.

``--current`` is a JSONL file (a string per line, or objects with ``question``/``text``/``prompt``/
``messages`` and optionally ``answer``), ``requests`` (the newest logged RAG requests), or a
dataset version id (its queries, answers, chunks and documents). ``run_drift_report``:

1. embedding drift per space both sides have: the reference's detectors (evidently's, plus
   alibi-detect's where it is installed) on the current embeddings;
2. feature drift with evidently (``monitoring.features``): request/query columns, and document
   columns when both sides have documents, with ``EmbeddingsDrift`` on the queries;
3. writes ``report.html`` (+ ``documents.html``) and ``report.json`` into the output folder, logs
   them with the metrics to MLflow (experiment ``twinops-drift``), and copies the HTML to
   ``html_out`` when given: a KFP step passes its ``Output[HTML]`` path there (the visualization).
"""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from pydantic import BaseModel, Field

from twinops.domain.documents import CleanedDocument
from twinops.domain.serving import RagRequestRecord
from twinops.errors import ConfigError
from twinops.infra.config_files import jsonl_rows
from twinops.monitoring.config import DriftConfig
from twinops.monitoring.detectors import DriftResult
from twinops.monitoring.events import extract_texts
from twinops.monitoring.features import (
    FeatureDriftSummary,
    document_frame,
    feature_report,
    request_frame,
    text_frame,
)
from twinops.monitoring.fit import batch_size_for, space_detectors
from twinops.monitoring.reference import DriftReference, reference_documents, reference_from_datasets
from twinops.settings import Settings

REQUESTS = "requests"
EXPERIMENT = "twinops-drift"


class CurrentData(BaseModel):
    label: str
    texts: dict[str, list[str]] = Field(default_factory=dict)
    documents: list[CleanedDocument] = Field(default_factory=list)
    requests: list[RagRequestRecord] = Field(default_factory=list)


class SpaceDrift(BaseModel):
    space: str
    reference_texts: int
    current_texts: int
    tested: int = Field(description="Current texts tested (at most half the reference, see the docs).")
    results: list[DriftResult]

    @property
    def is_drift(self) -> bool:
        return any(r.is_drift for r in self.results)


class DriftReportSummary(BaseModel):
    reference_id: str
    reference: str
    current: str
    created_at: datetime
    drift: bool
    spaces: list[SpaceDrift] = Field(default_factory=list)
    features: list[FeatureDriftSummary] = Field(default_factory=list)
    html: list[str] = Field(default_factory=list)
    json_path: str
    mlflow_run_id: str | None = None


def _jsonl_current(path: Path) -> CurrentData:
    queries: list[str] = []
    answers: list[str] = []
    for number, row in jsonl_rows(path):
        if isinstance(row, str):
            queries.append(row)
            continue
        if not isinstance(row, dict):
            raise ConfigError(f"{path} line {number} is neither a string nor an object")
        found = extract_texts({"instances": [row]})
        queries += found[:1]
        if isinstance(row.get("answer"), str) and row["answer"].strip():
            answers.append(row["answer"])
    if not queries and not answers:
        raise ConfigError(f"{path} holds no texts: write one JSON string or {{'question': ...}} per line")
    texts = {"queries": queries}
    if answers:
        texts["answers"] = answers
    return CurrentData(label=str(path), texts=texts)


def load_current(settings: Settings, current: str, *, db=None, limit: int = 1000) -> CurrentData:
    """``current`` as a JSONL path, ``requests`` (the request log) or a dataset version id."""
    from twinops.infra.mongo import connect

    path = Path(current).expanduser()
    if path.is_file():
        return _jsonl_current(path)
    if current.endswith((".jsonl", ".json")) or "/" in current:
        raise ConfigError(
            f"--current {current} does not exist: pass a JSONL file, `requests` or a dataset version id"
        )
    db = db if db is not None else connect(settings)
    if current == REQUESTS:
        from twinops.infra.request_log import RequestLogRepository

        records = RequestLogRepository(db).recent(limit)
        if not records:
            raise ConfigError(
                "the request log is empty: serve the twin and ask it something, or pass a JSONL file"
            )
        return CurrentData(
            label=f"request log ({len(records)} newest)",
            texts={"queries": [r.question for r in records], "answers": [r.answer for r in records]},
            requests=records,
        )
    data = reference_from_datasets(db, (current,), label=current)
    return CurrentData(label=current, texts=data.texts, documents=data.documents)


def _subsample(vectors: np.ndarray, size: int, seed: int) -> np.ndarray:
    if len(vectors) <= size:
        return vectors
    return vectors[np.sort(np.random.default_rng(seed).choice(len(vectors), size=size, replace=False))]


def embedding_drift(
    reference: DriftReference, current: dict[str, np.ndarray], config: DriftConfig
) -> list[SpaceDrift]:
    """Every detector of each space both sides have.

    The detectors are calibrated for one batch size drawn from the reference, so at most half the
    reference is tested (a random subset of the current texts when there are more).
    """
    from twinops.monitoring.alibi import alibi_available

    backend = "both" if alibi_available() else "evidently"
    found = []
    for space, vectors in current.items():
        if space not in reference.spaces or len(vectors) < 2:
            continue
        size = batch_size_for(reference.spaces[space], len(vectors))
        detectors = space_detectors(reference, space, config, batch_size=size, backend=backend)
        tested = _subsample(vectors, size, config.seed)
        found.append(
            SpaceDrift(
                space=space,
                reference_texts=reference.info.spaces[space],
                current_texts=len(vectors),
                tested=len(tested),
                results=detectors.predict(tested),
            )
        )
    return found


def run_drift_report(
    settings: Settings,
    reference: DriftReference,
    current: CurrentData,
    embedder,
    config: DriftConfig,
    *,
    out_dir: Path | None = None,
    html_out: Path | None = None,
    log_mlflow: bool = True,
) -> DriftReportSummary:
    """Embedding and feature drift of ``current`` against ``reference``, written and logged."""
    now = datetime.now(UTC)
    out_dir = out_dir or settings.reports_dir / "drift" / f"{now:%Y%m%d-%H%M%S}-{reference.id}"
    out_dir.mkdir(parents=True, exist_ok=True)
    vectors = {
        space: embedder.encode(texts, batch_size=config.embed_batch_size)
        for space, texts in current.texts.items()
        if texts and space in reference.spaces
    }
    spaces = embedding_drift(reference, vectors, config)
    features, html = _feature_reports(
        reference, current, vectors=vectors, config=config, out_dir=out_dir, now=now
    )
    summary = DriftReportSummary(
        reference_id=reference.id,
        reference=reference.info.label,
        current=current.label,
        created_at=now,
        drift=any(s.is_drift for s in spaces) or any(f.dataset_drift for f in features),
        spaces=spaces,
        features=features,
        html=[str(p) for p in html],
        json_path=str(out_dir / "report.json"),
    )
    Path(summary.json_path).write_text(summary.model_dump_json(indent=2), encoding="utf-8")
    if html_out is not None and html:
        html_out.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(html[0], html_out)
    if log_mlflow:
        summary = summary.model_copy(update={"mlflow_run_id": _log_mlflow(settings, summary, out_dir)})
        Path(summary.json_path).write_text(summary.model_dump_json(indent=2), encoding="utf-8")
    return summary


def _feature_reports(
    reference: DriftReference,
    current: CurrentData,
    *,
    vectors: dict[str, np.ndarray],
    config: DriftConfig,
    out_dir: Path,
    now: datetime,
) -> tuple[list[FeatureDriftSummary], list[Path]]:
    summaries: list[FeatureDriftSummary] = []
    html: list[Path] = []
    queries = current.texts.get("queries", [])
    if queries and "queries" in reference.spaces:
        ref_queries = reference.texts("queries")
        current_frame = request_frame(current.requests) if current.requests else text_frame(queries)
        space = reference.spaces["queries"]
        embeddings = {"queries": (space.reduced, space.reducer.transform(vectors["queries"]))}
        snapshot, summary = feature_report(
            "queries",
            text_frame(ref_queries),
            current_frame,
            drift_share=config.drift_share,
            embeddings=embeddings,
        )
        snapshot.save_html(str(out_dir / "report.html"))
        summaries.append(summary)
        html.append(out_dir / "report.html")
    reference_docs = reference_documents(reference)
    if current.documents and reference_docs:
        snapshot, summary = feature_report(
            "documents",
            document_frame(reference_docs, now),
            document_frame(current.documents, now),
            drift_share=config.drift_share,
        )
        snapshot.save_html(str(out_dir / "documents.html"))
        summaries.append(summary)
        html.append(out_dir / "documents.html")
    return summaries, html


def report_metrics(summary: DriftReportSummary) -> dict[str, float]:
    """The report's scalars (MLflow metrics, KFP metrics): the verdict, each detector's distance and
    p-value per space, and each feature table's share of drifted columns."""
    metrics = {"drift": float(summary.drift)}
    for space in summary.spaces:
        for result in space.results:
            key = f"{space.space}.{result.detector}"
            metrics[f"{key}.distance"] = result.distance
            if result.p_val is not None:
                metrics[f"{key}.p_val"] = result.p_val
    for feature in summary.features:
        metrics[f"{feature.table}.share_drifted"] = feature.share_drifted
    return metrics


def _log_mlflow(settings: Settings, summary: DriftReportSummary, out_dir: Path) -> str:
    import mlflow

    from twinops.infra.registry import fast_fail, use_tracking

    with fast_fail():
        use_tracking(settings)
        mlflow.set_experiment(EXPERIMENT)
        with mlflow.start_run(run_name=f"drift-{summary.reference_id}") as run:
            mlflow.log_params({"reference_id": summary.reference_id, "reference": summary.reference[:250]})
            mlflow.log_param("current", summary.current[:250])
            mlflow.log_metrics(report_metrics(summary))
            mlflow.log_artifacts(str(out_dir), "drift_report")
            return run.info.run_id
