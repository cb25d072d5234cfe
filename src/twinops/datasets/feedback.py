"""The data flywheel: rated RAG answers from the request log become DPO preference pairs.

``build_feedback_preferences`` reads every feedback (optionally only since a date) with its logged
request through ``RequestLogRepository`` and makes pairs in contract 4's preference format
(TRL ``prompt``/``chosen``/``rejected`` messages plus ``document_id``):

- an edited answer is ``chosen`` over the answer the twin logged (``rejected``);
- among answers to the same question (compared without case and extra spaces), an answer rated
  ``HIGH_RATING`` or more is ``chosen`` over one rated ``LOW_RATING`` or less (an answer rated
  several times counts with its mean rating).

Feedback is screened before it makes a pair (``screen_feedback``), each drop counted by reason in
the version's ``stats.drops`` and the summary: a rating without a voter the server vouched for
(``feedback:anonymous``, rows from before ``/feedback`` had identities), an edited answer too short
or too long (``feedback:edit_length``), a question or answer that reads as a prompt injection
(``feedback:injection``: "ignore all previous instructions", chat-template tokens, ...), an edit
rated as good (``feedback:rating_disagrees``: an edit says the answer was wrong) and an answer its
voters rate both high and low (``feedback:raters_disagree``).

The pairs go into ``train`` of a new PREFERENCE DatasetVersion, saved like every other dataset
(``store.save_dataset``). By default the rows of a base preference version (``latest``) come along
(its ``train`` rows before the new pairs, its ``test`` split as is): training asks for the latest
preference dataset, and a handful of feedback pairs alone would replace what it learned from the
author's writing. Pairs whose text overlaps the latest golden set, or carries its canary, are
dropped as the main build drops them. The lineage ``parents`` name the base version, the golden
set, every feedback that made a kept pair (``feedback:<id>``) and its request (``request:<id>``).

Without any rated feedback, or when no feedback makes a pair, nothing is written and the build
raises one line.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import product
from statistics import fmean
from typing import Any

from pydantic import BaseModel, Field

from twinops.datasets.golden import Decontaminator, assert_no_canary
from twinops.datasets.jobs import DatasetJob
from twinops.datasets.preference import PreferencePair
from twinops.domain import DatasetKind, DatasetVersion
from twinops.domain.hashing import content_hash
from twinops.domain.serving import MAX_EDITED_ANSWER_CHARS, Feedback, RagRequestRecord
from twinops.errors import ConfigError, NotFound
from twinops.infra.dataset_store import load_splits, save_dataset
from twinops.infra.dataset_versions import DatasetVersionRepository
from twinops.infra.mongo import connect
from twinops.infra.request_log import RequestLogRepository
from twinops.settings import Settings

# Where both the question and the rejected answer of a feedback pair come from (``source`` fields).
FEEDBACK = "feedback"

HIGH_RATING = 4
LOW_RATING = 2
FEEDBACK_DATASET_NAME = "twin-feedback"
MIN_EDITED_ANSWER_CHARS = 12  # shorter is a reaction ("no", "wrong!"), not an answer to learn
# What reads as an attempt to steer the model rather than to answer: instructions aimed at the
# model, and chat-template or instruction markers that have no place in an author's prose.
INJECTION_PATTERNS = tuple(
    re.compile(pattern, re.IGNORECASE | re.MULTILINE)
    for pattern in (
        r"\b(ignore|disregard|forget|override)\b[^.\n]{0,40}\b(previous|prior|above|earlier|preceding|your|all)\b"
        r"[^.\n]{0,40}\b(instructions?|prompts?|rules|directions|guidelines)\b",
        r"\b(system|developer)\s+(prompt|message|instructions?)\b",
        r"\byou\s+are\s+now\b",
        r"\b(jailbreak|do\s+anything\s+now)\b",
        r"<\|[a-z_]+\|>",  # <|im_start|>, <|endoftext|>, ...
        r"\[/?INST\]|<</?SYS>>",
        r"^\s*#{2,}\s*(system|instruction)\b",
    )
)


class FeedbackBuildSummary(BaseModel):
    """What ``build_feedback_preferences`` did."""

    version: str
    uri: str
    new: bool = Field(description="False when the same feedback already gave this version.")
    feedback: int = Field(description="Feedback rows read.")
    requests: int = Field(description="Distinct requests those rows rate.")
    edited_pairs: int = Field(description="Pairs from edited answers (kept).")
    rated_pairs: int = Field(description="Pairs from high- vs. low-rated answers (kept).")
    base: str | None = Field(None, description="The preference version whose rows came along.")
    base_rows: dict[str, int] = Field(
        default_factory=dict, description="Rows taken from the base, per split."
    )
    split_sizes: dict[str, int] = Field(default_factory=dict)
    drops: dict[str, int] = Field(default_factory=dict, description="Pairs dropped, by reason.")
    since: datetime | None = None
    mlflow_run_id: str | None = None


@dataclass(frozen=True)
class _Pair:
    """A preference pair, how it arose (``edited`` or ``rated``) and the feedback and requests behind it."""

    pair: PreferencePair
    origin: str
    feedback_ids: tuple[str, ...]
    request_ids: tuple[str, ...]


def _question_key(question: str) -> str:
    return " ".join(question.split()).casefold()


def _first_document(record: RagRequestRecord) -> str:
    """The top source's document, so the row names a document like the author-text pairs do."""
    return record.sources[0].document_id if record.sources else ""


def _first_chunk(record: RagRequestRecord) -> str:
    return record.sources[0].chunk_id if record.sources else ""


def _edited_pairs(rated: list[tuple[RagRequestRecord, Feedback]]) -> list[_Pair]:
    pairs = []
    for record, feedback in rated:
        edited = (feedback.edited_answer or "").strip()
        if not edited or edited == record.answer.strip():
            continue
        pair = PreferencePair(
            record.question,
            edited,
            record.answer,
            _first_document(record),
            _first_chunk(record),
            source=FEEDBACK,
            rejected_source=FEEDBACK,
        )
        pairs.append(_Pair(pair, "edited", (feedback.id,), (record.request_id,)))
    return pairs


def _rated_pairs(rated: list[tuple[RagRequestRecord, Feedback]]) -> list[_Pair]:
    """High- over low-rated answers to the same question, each request at its mean rating."""
    requests: dict[str, RagRequestRecord] = {}
    feedback_of: dict[str, list[Feedback]] = defaultdict(list)
    for record, feedback in rated:
        requests[record.request_id] = record
        feedback_of[record.request_id].append(feedback)
    by_question: dict[str, list[str]] = defaultdict(list)
    for request_id, record in requests.items():
        by_question[_question_key(record.question)].append(request_id)

    pairs = []
    for request_ids in by_question.values():
        mean = {rid: fmean(f.rating for f in feedback_of[rid]) for rid in request_ids}
        high = [rid for rid in request_ids if mean[rid] >= HIGH_RATING]
        low = [rid for rid in request_ids if mean[rid] <= LOW_RATING]
        for good, bad in product(high, low):
            chosen, rejected = requests[good], requests[bad]
            if chosen.answer.strip() == rejected.answer.strip():
                continue
            pair = PreferencePair(
                chosen.question,
                chosen.answer,
                rejected.answer,
                _first_document(chosen),
                _first_chunk(chosen),
                source=FEEDBACK,
                rejected_source=FEEDBACK,
            )
            feedback_ids = tuple(f.id for f in (*feedback_of[good], *feedback_of[bad]))
            pairs.append(_Pair(pair, "rated", feedback_ids, (good, bad)))
    return pairs


def _injection(text: str | None) -> bool:
    return bool(text) and any(pattern.search(text) for pattern in INJECTION_PATTERNS)


def _screen_reason(record: RagRequestRecord, feedback: Feedback) -> str | None:
    """Why one feedback must not become training data, or None."""
    if feedback.voter is None:
        return "feedback:anonymous"
    edited = (feedback.edited_answer or "").strip()
    if edited and not MIN_EDITED_ANSWER_CHARS <= len(edited) <= MAX_EDITED_ANSWER_CHARS:
        return "feedback:edit_length"
    if _injection(record.question) or _injection(edited) or _injection(record.answer):
        return "feedback:injection"
    if edited and feedback.rating >= HIGH_RATING:
        return "feedback:rating_disagrees"
    return None


def screen_feedback(
    rated: list[tuple[RagRequestRecord, Feedback]], drops: Counter[str]
) -> list[tuple[RagRequestRecord, Feedback]]:
    """The feedback fit to train on; each dropped row counted in ``drops`` by its reason."""
    kept = []
    for record, feedback in rated:
        reason = _screen_reason(record, feedback)
        if reason is None:
            kept.append((record, feedback))
        else:
            drops[reason] += 1
    ratings: dict[str, set[str]] = defaultdict(set)
    for record, feedback in kept:
        if feedback.rating >= HIGH_RATING:
            ratings[record.request_id].add("high")
        elif feedback.rating <= LOW_RATING:
            ratings[record.request_id].add("low")
    disputed = {request_id for request_id, seen in ratings.items() if seen == {"high", "low"}}
    drops["feedback:raters_disagree"] += sum(record.request_id in disputed for record, _ in kept)
    return [(record, feedback) for record, feedback in kept if record.request_id not in disputed]


def _pair_text(item: _Pair) -> str:
    return f"{item.pair.instruction}\n{item.pair.chosen}\n{item.pair.rejected}"


def _row_key(row: dict[str, Any]) -> str:
    return content_hash(row["prompt"], row["chosen"], row["rejected"])


def _unique(pairs: list[_Pair], drops: Counter[str]) -> list[_Pair]:
    """One pair per (prompt, chosen, rejected); the first one's sources stand for it."""
    seen: set[str] = set()
    kept = []
    for item in pairs:
        key = _row_key(item.pair.to_row())
        if key in seen:
            drops["feedback:duplicate"] += 1
            continue
        seen.add(key)
        kept.append(item)
    return kept


def _base_version(repository: DatasetVersionRepository, base: str | None) -> DatasetVersion | None:
    if base is None:
        return None
    if base == "latest":
        return repository.latest(DatasetKind.PREFERENCE)
    version = repository.get(base)
    if version.kind is not DatasetKind.PREFERENCE:
        raise ConfigError(
            f"base dataset {base!r} is a {version.kind.value} dataset: pass a preference version id, "
            "`latest`, or build from feedback only"
        )
    return version


def _base_rows(version: DatasetVersion | None) -> dict[str, list[dict[str, Any]]]:
    if version is None:
        return {"train": [], "test": []}
    splits = load_splits(version)
    return {name: splits[name].to_list() if name in splits else [] for name in ("train", "test")}


def _golden_texts(golden: DatasetVersion | None) -> list[str]:
    if golden is None:
        return []
    rows = load_splits(golden)["test"].to_list()
    return [text for row in rows for text in (row["instruction"], row["reference"])]


def build_feedback_preferences(
    settings: Settings,
    *,
    since: datetime | None = None,
    base: str | None = "latest",
    log_to_mlflow: bool = True,
) -> FeedbackBuildSummary:
    """Turn the feedback given after ``since`` (all when None) into a PREFERENCE dataset version.

    ``base`` is a preference version id whose rows come along, ``latest`` (the newest, if any) or
    None for the feedback pairs alone. Same feedback and base: same version id, nothing rewritten.
    """
    if since is not None and since.tzinfo is None:
        since = since.replace(tzinfo=UTC)  # dates from the CLI are UTC
    if log_to_mlflow:
        from twinops.infra.endpoints import mlflow_tracking_uri

        mlflow_tracking_uri(settings)  # raises ServiceUnavailable now, before any work
    db = connect(settings)
    rated = RequestLogRepository(db).rated_requests(since=since)
    after = f" after {since.isoformat()}" if since else ""
    if not rated:
        raise NotFound(
            f"no rated RAG answer{after} in the request log: send ratings with POST /feedback "
            "(or pass an earlier --since), then build again"
        )

    drops: Counter[str] = Counter()
    screened = screen_feedback(rated, drops)
    pairs = _unique([*_edited_pairs(screened), *_rated_pairs(screened)], drops)
    repository = DatasetVersionRepository(db)
    golden = repository.latest(DatasetKind.GOLDEN)
    job = DatasetJob()  # the main build's decontamination settings
    decontaminator = Decontaminator(_golden_texts(golden), job.decontamination_ngram)
    pairs = decontaminator.filter(pairs, _pair_text, job.decontamination_threshold, drops, "feedback")
    if not pairs:
        raise NotFound(
            f"{len(rated)} feedback row(s){after} made no preference pair (drops: {dict(drops) or 'none'}): "
            f"pairs need an edited answer, or answers to one question rated >= {HIGH_RATING} and "
            f"<= {LOW_RATING}"
        )
    new_rows = [item.pair.to_row() for item in pairs]
    assert_no_canary({"feedback/train": new_rows}, [golden.config.get("canary", "") if golden else ""])

    base_version = _base_version(repository, base)
    base_rows = _base_rows(base_version)
    known = {_row_key(row) for row in base_rows["train"]}
    fresh = [row for row in new_rows if _row_key(row) not in known]
    drops["feedback:already_in_base"] += len(new_rows) - len(fresh)
    splits = {"train": [*base_rows["train"], *fresh], "test": base_rows["test"]}

    feedback_ids = sorted({fid for item in pairs for fid in item.feedback_ids})
    request_ids = sorted({rid for item in pairs for rid in item.request_ids})
    parents = (
        *((base_version.id,) if base_version else ()),
        *((golden.id,) if golden else ()),
        *(f"feedback:{fid}" for fid in feedback_ids),
        *(f"request:{rid}" for rid in request_ids),
    )
    config = {
        "source": "feedback",
        "high_rating": HIGH_RATING,
        "low_rating": LOW_RATING,
        "decontamination_ngram": job.decontamination_ngram,
        "decontamination_threshold": job.decontamination_threshold,
    }
    kept_drops = {reason: count for reason, count in sorted(drops.items()) if count}
    version, is_new = save_dataset(
        settings,
        repository,
        kind=DatasetKind.PREFERENCE,
        name=base_version.name if base_version else FEEDBACK_DATASET_NAME,
        splits=splits,
        config=config,
        parents=parents,
        # Not in the config: which feedback was read is in the parents, so the same pairs from
        # another --since are the same version.
        stats={
            "drops": kept_drops,
            "feedback_pairs": len(pairs),
            "since": since.isoformat() if since else None,
        },
    )
    summary = FeedbackBuildSummary(
        version=version.id,
        uri=version.uri or "",
        new=is_new,
        feedback=len(rated),
        requests=len({record.request_id for record, _ in rated}),
        edited_pairs=sum(item.origin == "edited" for item in pairs),
        rated_pairs=sum(item.origin == "rated" for item in pairs),
        base=base_version.id if base_version else None,
        base_rows={name: len(rows) for name, rows in base_rows.items()},
        split_sizes={name: len(rows) for name, rows in splits.items()},
        drops=kept_drops,
        since=since,
    )
    if log_to_mlflow:
        from twinops.datasets.tracking import log_build

        summary.mlflow_run_id = log_build(
            settings,
            [version],
            params={
                "source": "feedback",
                "since": since.isoformat() if since else None,
                "base": summary.base,
            },
            metrics={"feedback_rows": float(len(rated)), "feedback_pairs": float(len(pairs))},
        )
    return summary
