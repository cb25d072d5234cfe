"""Feature drift with evidently: document features and request features, reference against current.

Document features are the columns Feast serves (``features.feast_store.stats_frames``: length,
language, platform, category, freshness), computed from cleaned documents. Request features come
from the request log (``RagRequestRecord``): query length and language, retrieval scores, answer
length and source count; a reference built from training data has the query and answer columns.
Only columns both sides have are compared.

``feature_report`` runs an evidently ``Report`` with ``DataDriftPreset`` (a test per column and one
on the share of drifted columns) and, for embedding spaces given, evidently's ``EmbeddingsDrift``.
It returns the snapshot (``save_html``, ``dict``) and a summary.
"""

from __future__ import annotations

from datetime import datetime

import numpy as np
from pydantic import BaseModel, Field

from twinops.domain.documents import CleanedDocument, DocumentOrigin
from twinops.domain.serving import RagRequestRecord

DOCUMENT_NUMERICAL = ("length_words", "length_chars", "age_days", "freshness")
DOCUMENT_CATEGORICAL = ("language", "platform", "category")
REQUEST_NUMERICAL = ("query_words", "query_chars", "top_score", "mean_score", "sources", "answer_words")
REQUEST_CATEGORICAL = ("query_language",)
UNKNOWN_LANGUAGE = "unknown"


def language_of(text: str) -> str:
    """ISO 639-1 code of a (possibly short) text; the document gate's identifier needs 8+ words."""
    import py3langid

    text = text.strip()
    return py3langid.classify(text)[0] if text else UNKNOWN_LANGUAGE


def document_frame(documents: list[CleanedDocument], now: datetime):
    """The Feast document columns of ``documents`` (as ``stats_frames`` computes them)."""
    import pandas as pd

    from twinops.features.feast_store import stats_frames
    from twinops.features.state import DocumentState

    rows = [
        DocumentState(
            **DocumentOrigin.fields_of(doc),
            source_content_hash=doc.source_content_hash,
            fingerprint="",
            status="kept",
            cleaned=doc,
            processed_at=now,
        )
        for doc in documents
    ]
    frame, _authors = stats_frames(rows, now)
    if frame.empty:
        return pd.DataFrame(columns=[*DOCUMENT_NUMERICAL, *DOCUMENT_CATEGORICAL])
    return frame[[*DOCUMENT_NUMERICAL, *DOCUMENT_CATEGORICAL]]


def text_frame(queries: list[str], answers: list[str] | None = None):
    """Query (and, row by row, answer) columns of texts without a request log record."""
    import pandas as pd

    frame = pd.DataFrame(
        {
            "query_words": [len(q.split()) for q in queries],
            "query_chars": [len(q) for q in queries],
            "query_language": [language_of(q) for q in queries],
        }
    )
    if answers and len(answers) == len(queries):
        frame["answer_words"] = [len(a.split()) for a in answers]
    return frame


def request_frame(records: list[RagRequestRecord]):
    """The request columns of logged RAG requests."""
    frame = text_frame([r.question for r in records], [r.answer for r in records])
    frame["top_score"] = [max((s.score for s in r.sources), default=np.nan) for r in records]
    frame["mean_score"] = [
        float(np.mean([s.score for s in r.sources])) if r.sources else np.nan for r in records
    ]
    frame["sources"] = [len(r.sources) for r in records]
    return frame


class ColumnDrift(BaseModel):
    column: str
    method: str
    score: float
    threshold: float
    drifted: bool


class FeatureDriftSummary(BaseModel):
    table: str
    rows_reference: int
    rows_current: int
    drifted_columns: int
    share_drifted: float
    dataset_drift: bool
    columns: list[ColumnDrift] = Field(default_factory=list)
    embeddings: dict[str, float] = Field(default_factory=dict, description="EmbeddingsDrift score per space.")
    tests: dict[str, str] = Field(default_factory=dict, description="Test name to status.")


def feature_report(
    table: str,
    reference,
    current,
    *,
    drift_share: float,
    embeddings: dict[str, tuple[np.ndarray, np.ndarray]] | None = None,
):
    """(snapshot, summary): evidently's drift report on the columns both frames have.

    ``embeddings`` maps a space to (reference, current) vectors with one row per frame row.
    """
    import pandas as pd
    from evidently import DataDefinition, Dataset, Report
    from evidently.metrics.embeddings import EmbeddingsDrift, ModelDriftMethod
    from evidently.presets import DataDriftPreset

    numerical = [c for c in (*DOCUMENT_NUMERICAL, *REQUEST_NUMERICAL) if c in reference and c in current]
    categorical = [
        c for c in (*DOCUMENT_CATEGORICAL, *REQUEST_CATEGORICAL) if c in reference and c in current
    ]
    reference = reference[numerical + categorical].reset_index(drop=True)
    current = current[numerical + categorical].reset_index(drop=True)
    embedding_columns: dict[str, list[str]] = {}
    for space, (ref_vectors, cur_vectors) in (embeddings or {}).items():
        names = [f"{space}_{i}" for i in range(ref_vectors.shape[1])]
        embedding_columns[space] = names
        reference = pd.concat([reference, pd.DataFrame(ref_vectors, columns=names)], axis=1)
        current = pd.concat([current, pd.DataFrame(cur_vectors, columns=names)], axis=1)
    definition = DataDefinition(
        numerical_columns=numerical, categorical_columns=categorical, embeddings=embedding_columns or None
    )
    metrics: list = [DataDriftPreset(columns=numerical + categorical, drift_share=drift_share)]
    metrics += [
        # A classifier told to separate the two sides, against its chance level (bootstrap).
        EmbeddingsDrift(
            embeddings_name=space, drift_method=ModelDriftMethod(bootstrap=True, quantile_probability=0.95)
        )
        for space in embedding_columns
    ]
    snapshot = Report(metrics, include_tests=True).run(
        current_data=Dataset.from_pandas(current, data_definition=definition),
        reference_data=Dataset.from_pandas(reference, data_definition=definition),
    )
    return snapshot, _summary(table, snapshot.dict(), len(reference), len(current))


def _summary(table: str, result: dict, rows_reference: int, rows_current: int) -> FeatureDriftSummary:
    columns: list[ColumnDrift] = []
    drifted = {"count": 0.0, "share": 0.0}
    embeddings: dict[str, float] = {}
    for metric in result.get("metrics", []):
        config = metric.get("config", {})
        kind = config.get("type", "")
        if kind.endswith("ValueDrift"):
            score, threshold = float(metric["value"]), float(config["threshold"])
            p_value_method = "p_value" in config.get("method", "")
            columns.append(
                ColumnDrift(
                    column=config["column"],
                    method=config.get("method", ""),
                    score=score,
                    threshold=threshold,
                    drifted=score < threshold if p_value_method else score >= threshold,
                )
            )
        elif kind.endswith("DriftedColumnsCount"):
            drifted = metric["value"]
        elif kind.endswith("EmbeddingsDrift"):
            embeddings[config.get("embeddings_name", "?")] = float(metric["value"])
    tests = {test["name"]: str(test["status"]).rsplit(".", 1)[-1] for test in result.get("tests", [])}
    share_test = [status for name, status in tests.items() if name.startswith("Share of Drifted Columns")]
    return FeatureDriftSummary(
        table=table,
        rows_reference=rows_reference,
        rows_current=rows_current,
        drifted_columns=int(drifted.get("count", 0)),
        share_drifted=float(drifted.get("share", 0.0)),
        dataset_drift=any(status == "FAIL" for status in share_test),
        columns=columns,
        embeddings=embeddings,
        tests=tests,
    )
