"""The retraining trigger: a drift event starts the twin pipeline, once per cool-down, with a record.

Monitoring sits below the pipelines, so it does not know how a run starts: ``RetrainTrigger`` takes
a ``runner`` (``RetrainRequest -> str``, what was started), and the CLI passes one that calls
``pipelines.local.run_local`` (``kfp.local``) or ``pipelines.submit.submit`` (``kfp.Client``).

Every drift event that reaches the trigger is appended to ``TWINOPS_HOME/drift/triggers.jsonl``:
``started`` (the runner was called, with the detectors' verdicts and where the drifted texts were
saved for the pipeline), ``cooldown`` (a run started less than ``cooldown`` ago; nothing started),
then ``submitted`` or ``failed`` when the runner returns. The cool-down is read back from that
file, so a restarted detector does not start a second run. The runner runs on a thread of its
own: a pipeline may take many minutes, and the detector keeps answering meanwhile.

The drifted texts reach the pipeline through ``with_new_data``: the runner's parameters get
``dataset_options.queries`` naming the saved JSONL (relative to TWINOPS_HOME, the volume the
detector and the pipeline steps share), and the datasets step turns each text into an instruction
answered by the author's closest passage (``datasets.queries``).
"""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field

from twinops.domain.documents import utcnow
from twinops.errors import ConfigError
from twinops.monitoring.detectors import DriftResult

Outcome = Literal["started", "cooldown", "submitted", "failed"]


class RetrainRequest(BaseModel):
    """What the runner is asked to start, and why."""

    trigger_id: str
    reason: str
    reference_id: str
    results: list[DriftResult]
    data_path: str | None = Field(None, description="JSONL of the drifted texts (the new data).")


class TriggerRecord(BaseModel):
    trigger_id: str
    at: datetime = Field(default_factory=utcnow)
    outcome: Outcome
    reason: str
    reference_id: str
    results: list[DriftResult] = Field(default_factory=list)
    data_path: str | None = None
    run: str | None = Field(None, description="What the runner started (run id or URL).")
    error: str | None = None
    next_allowed_at: datetime | None = None


Runner = Callable[[RetrainRequest], str]
DATASET_OPTIONS = "dataset_options"


def with_new_data(
    raw_params: dict[str, str],
    request: RetrainRequest,
    home: Path,
    *,
    default_options: dict[str, Any] | None = None,
) -> dict[str, str]:
    """``raw_params`` (pipeline parameters as strings) with the request's texts as the datasets' queries.

    The path is written relative to ``home`` when it lies under it, so a step that mounts
    TWINOPS_HOME elsewhere still finds it; the other dataset options are kept: those the run's
    parameters give, else the pipeline's default ``default_options`` (a dict parameter passed to
    a pipeline replaces its default whole, so without them the budget and the written questions
    the pipeline would have used were lost on retraining).
    """
    if not request.data_path:
        return dict(raw_params)
    given = raw_params.get(DATASET_OPTIONS)
    try:
        options = json.loads(given) if given else dict(default_options or {})
    except ValueError as error:
        raise ConfigError(f"pipeline parameter {DATASET_OPTIONS} is not JSON: fix the run config") from error
    if not isinstance(options, dict):
        raise ConfigError(f"pipeline parameter {DATASET_OPTIONS} must be a mapping of DatasetJob fields")
    path = Path(request.data_path)
    if path.is_relative_to(home):
        path = path.relative_to(home)
    return {**raw_params, DATASET_OPTIONS: json.dumps({**options, "queries": path.as_posix()})}


def _p(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3g}"


class RetrainTrigger:
    def __init__(
        self,
        runner: Runner,
        *,
        cooldown: timedelta,
        folder: Path,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self._runner = runner
        self._cooldown = cooldown
        self._folder = folder
        self._clock = clock
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []

    @property
    def log_path(self) -> Path:
        return self._folder / "triggers.jsonl"

    def records(self) -> list[TriggerRecord]:
        if not self.log_path.exists():
            return []
        lines = self.log_path.read_text(encoding="utf-8").splitlines()
        return [TriggerRecord.model_validate_json(line) for line in lines if line.strip()]

    def last_start(self) -> datetime | None:
        starts = [record.at for record in self.records() if record.outcome == "started"]
        return max(starts) if starts else None

    def on_drift(self, results: list[DriftResult], *, reference_id: str, texts: list[str]) -> TriggerRecord:
        """Start a retraining for this drift, unless one started within the cool-down."""
        drifted = [r for r in results if r.is_drift]
        reason = "drift in " + ", ".join(
            f"{r.space} by {r.detector} (distance {r.distance:.4g}, p={_p(r.p_val)})"
            for r in drifted or results
        )
        with self._lock:
            now = self._clock()
            last = self.last_start()
            trigger_id = f"retrain-{now:%Y%m%d-%H%M%S}-{uuid.uuid4().hex[:6]}"
            if last is not None and now < last + self._cooldown:
                record = TriggerRecord(
                    trigger_id=trigger_id,
                    at=now,
                    outcome="cooldown",
                    reason=reason,
                    reference_id=reference_id,
                    results=results,
                    next_allowed_at=last + self._cooldown,
                )
                self._append(record)
                return record
            data_path = self._save_texts(trigger_id, texts)
            record = TriggerRecord(
                trigger_id=trigger_id,
                at=now,
                outcome="started",
                reason=reason,
                reference_id=reference_id,
                results=results,
                data_path=str(data_path),
                next_allowed_at=now + self._cooldown,
            )
            self._append(record)
        request = RetrainRequest(
            trigger_id=trigger_id,
            reason=reason,
            reference_id=reference_id,
            results=results,
            data_path=str(data_path),
        )
        thread = threading.Thread(target=self._run, args=(request,), name=trigger_id, daemon=True)
        self._threads.append(thread)
        thread.start()
        return record

    def wait(self, timeout: float | None = None) -> None:
        """Wait for the runners started so far (tests, and a clean shutdown)."""
        for thread in list(self._threads):
            thread.join(timeout)

    def _run(self, request: RetrainRequest) -> None:
        base = {
            "trigger_id": request.trigger_id,
            "reason": request.reason,
            "reference_id": request.reference_id,
        }
        try:
            run = self._runner(request)
        except Exception as error:  # any failure of the runner is recorded; the detector goes on
            first = (str(error).splitlines() or [type(error).__name__])[0][:300]
            outcome = TriggerRecord(**base, at=self._clock(), outcome="failed", error=first)
        else:
            outcome = TriggerRecord(**base, at=self._clock(), outcome="submitted", run=str(run))
        with self._lock:
            self._append(outcome)

    def _append(self, record: TriggerRecord) -> None:
        self._folder.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("a", encoding="utf-8") as out:
            out.write(record.model_dump_json() + "\n")

    def _save_texts(self, trigger_id: str, texts: list[str]) -> Path:
        path = self._folder / "data" / f"{trigger_id}.jsonl"
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("w", encoding="utf-8") as out:
            for text in texts:
                out.write(json.dumps({"text": text}, ensure_ascii=False) + "\n")
        return path
