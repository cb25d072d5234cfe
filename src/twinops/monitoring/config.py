"""What drift detection is configured with: one pydantic model, defaults in code, overrides in YAML.

``configs/drift/default.yaml`` lists the defaults; ``twinops drift ... --config FILE`` and the
pipeline read the same model, so a threshold is defined once.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from twinops.infra.config_files import read_yaml_mapping, validate_config

EvidentlyMethod = Literal["model", "ratio", "distance", "mmd"]
AlibiMethod = Literal["mmd", "lsdd"]
ReducerKind = Literal["random", "pca"]


class EventLimits(BaseModel):
    """What the online detector takes in before it sheds: one logger event must not exhaust it.

    Past ``max_bytes`` or ``max_texts`` an event is refused with a 413 (too large, never worth a
    retry); past ``max_waiting`` deliveries in flight a new one is shed with a 429 and ``Retry-After``
    (KServe's logger retries). Both are counted by reason in ``twinops_drift_events_rejected_total``.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    max_bytes: int = Field(
        4 * 1024 * 1024,
        ge=1024,
        description="Largest event body read; 256 MiniLM vectors as JSON take about 1.2 MB.",
    )
    max_texts: int = Field(256, ge=1, description="Most texts (or vectors) one event may carry.")
    max_waiting: int = Field(
        64, ge=1, description="Deliveries being read or waiting for the detector before new ones are shed."
    )
    retry_after_seconds: int = Field(5, ge=1, description="Retry-After of a shed (429) delivery.")
    max_testing: int = Field(
        4,
        ge=1,
        description="Deliveries answered before their batches' verdicts (verdict_in_reply off) whose "
        "tests are still running; a delivery that fills another batch waits for one to end before its "
        "reply, so a fast logger is slowed down instead of queueing batches without bound.",
    )


class DriftConfig(BaseModel):
    """Thresholds and sizes of the drift detectors, the online batcher and the retraining trigger."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    p_val: float = Field(
        0.05,
        gt=0,
        lt=1,
        description="A batch drifts when its p-value is at or below this: the false positive rate aimed at.",
    )
    evidently_methods: tuple[EvidentlyMethod, ...] = Field(
        ("mmd", "model", "distance", "ratio"),
        description="evidently's embedding drift methods run in the core environment.",
    )
    alibi_methods: tuple[AlibiMethod, ...] = Field(
        ("mmd", "lsdd"), description="alibi-detect detectors (PyTorch backend) run in .venv-drift."
    )
    reducer: ReducerKind = Field(
        "random", description="Dimension reducer: a random projection (untrained) or a PCA of the reference."
    )
    reduced_dimension: int = Field(32, ge=1, description="Dimensions the reducer keeps before the tests.")
    calibration_draws: int = Field(
        50,
        ge=10,
        description="Same-distribution draws from the reference that calibrate the p-value of evidently's "
        "methods (their scores come without one).",
    )
    alibi_permutations: int = Field(50, ge=10, description="Permutations behind alibi-detect's p-values.")
    batch_size: int = Field(32, ge=2, description="Texts the online detector gathers before one test.")
    max_reference: int = Field(1000, ge=10, description="At most this many reference texts per space.")
    embed_batch_size: int = Field(32, ge=1)
    cooldown_seconds: float = Field(
        6 * 3600, ge=0, description="After a retraining starts, further drift events only get recorded."
    )
    verdict_in_reply: bool = Field(
        False,
        description="The online detector answers the delivery that fills a batch with the batch's "
        "verdict (Seldon's alibi-detect server), holding the sender while it is tested. Off: that "
        "delivery is answered 202 at once and the verdict reaches /metrics, the reply URL, the webhook "
        "and the retraining trigger when the test ends; KServe's logger never reads the reply.",
    )
    events: EventLimits = Field(
        default_factory=EventLimits, description="The online detector's bounds on what it takes in."
    )
    drift_share: float = Field(
        0.5, gt=0, le=1, description="Feature report: the dataset drifts when this share of columns does."
    )
    seed: int = 0


def load_drift_config(path: Path | None = None, **overrides: object) -> DriftConfig:
    """The defaults, updated from the YAML at ``path`` (when given) and then from ``overrides``."""
    data = {}
    what = "drift config"
    if path is not None:
        data = read_yaml_mapping(path, what=what, shape="a mapping of settings")
        what += f" {path}"
    given = {key: value for key, value in overrides.items() if value is not None}
    if given:
        data.update(given)
        what += " with " + ", ".join(f"{key}={value!r}" for key, value in given.items())
    return validate_config(DriftConfig, data, what=what)
