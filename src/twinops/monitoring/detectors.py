"""Embedding drift detectors: evidently's methods with calibrated p-values, behind one interface.

A detector is fitted on the reference embeddings of one *space* (the questions the twin was
trained on, its answers, the indexed chunks) and tests a batch of new embeddings against them.
Every detector answers with a ``DriftResult``: ``is_drift``, ``distance`` (the method's score),
``p_val`` and ``threshold`` (the p-value at or below which a batch drifts), the shape of the reply
of Seldon's alibi-detect server.

evidently's embedding drift methods (``model``, ``ratio``, ``distance``, ``mmd``) return a score
and compare it with a fixed threshold, which does not fit every embedder and batch size. Fitting
here calibrates them instead: the method scores ``calibration_draws`` batches drawn from the
reference against the rest of it, and a new batch's p-value is the share of those same-distribution
scores at least as large as its own. Its false positive rate is then ``p_val`` by construction.

The embeddings are reduced first (``Reducer``: a random projection, or a PCA of the reference), stored
as plain arrays so that the core environment and ``.venv-drift`` (numpy 1) read the same artifact.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from twinops.errors import ConfigError
from twinops.monitoring.config import DriftConfig, EvidentlyMethod, ReducerKind


class DriftResult(BaseModel):
    """One detector's verdict on one batch."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    detector: str
    space: str
    is_drift: bool
    distance: float = Field(description="The method's drift score (larger = further from the reference).")
    p_val: float | None = Field(description="Probability of a score this large without drift.")
    threshold: float = Field(description="p-value at or below which the batch drifts.")
    batch_size: int

    def seldon_data(self) -> dict:
        """The ``data`` of Seldon's alibi-detect server reply."""
        return {
            "is_drift": int(self.is_drift),
            "distance": self.distance,
            "p_val": self.p_val,
            "threshold": self.threshold,
        }


class Detector(Protocol):
    name: str
    space: str

    def predict(self, embeddings: np.ndarray) -> DriftResult: ...


@dataclass(frozen=True)
class Reducer:
    """A linear map to fewer dimensions, fixed at fit time: ``(x - mean) @ components.T``.

    ``random`` (the default) is a Gaussian random projection: like alibi-detect's untrained
    autoencoder it does not depend on the reference, so a shift along directions the reference
    never varies in survives the reduction. ``pca`` keeps the reference's main directions, which
    can project such a shift away (a new topic lands near the reference mean).
    """

    mean: np.ndarray
    components: np.ndarray

    @property
    def input_dimension(self) -> int:
        return int(self.mean.shape[0])

    @property
    def output_dimension(self) -> int:
        return int(self.components.shape[0])

    @classmethod
    def fit(
        cls, reference: np.ndarray, dimension: int, kind: ReducerKind = "random", *, seed: int = 0
    ) -> Reducer:
        if kind == "pca":
            from sklearn.decomposition import PCA

            keep = max(1, min(dimension, reference.shape[0] - 1, reference.shape[1]))
            pca = PCA(n_components=keep, random_state=seed).fit(reference)
            return cls(mean=pca.mean_.astype(np.float32), components=pca.components_.astype(np.float32))
        from sklearn.random_projection import GaussianRandomProjection

        projection = GaussianRandomProjection(
            n_components=min(dimension, reference.shape[1]), random_state=seed
        )
        projection.fit(reference)
        return cls(
            mean=np.zeros(reference.shape[1], dtype=np.float32),
            components=np.asarray(projection.components_, dtype=np.float32),
        )

    def transform(self, embeddings: np.ndarray) -> np.ndarray:
        return ((np.asarray(embeddings, dtype=np.float32) - self.mean) @ self.components.T).astype(np.float32)

    def save(self, path: Path) -> None:
        np.savez(path, mean=self.mean, components=self.components)

    @classmethod
    def load(cls, path: Path) -> Reducer:
        with np.load(path) as arrays:
            return cls(mean=arrays["mean"], components=arrays["components"])


def evidently_method(name: EvidentlyMethod):
    """evidently's drift method ``name``, in score-only form (the threshold is calibrated here)."""
    from evidently.metrics.embeddings import (
        DistanceDriftMethod,
        MMDDriftMethod,
        ModelDriftMethod,
        RatioDriftMethod,
    )

    methods = {
        "model": ModelDriftMethod,
        # Per component a K-S test at 0.05 (the default wasserstein 0.1 flags every component of
        # a small batch, so the share of drifted components stops telling batches apart).
        "ratio": lambda: RatioDriftMethod(component_stattest="ks", component_stattest_threshold=0.05),
        "distance": DistanceDriftMethod,
        "mmd": MMDDriftMethod,
    }
    return methods[name]()


def method_score(method, reference: np.ndarray, current: np.ndarray) -> float:
    import pandas as pd

    # The model method adds a target column to the frames it is given: fresh frames every call.
    score, _drift, _name = method(pd.DataFrame(current), pd.DataFrame(reference))
    return float(score)


def empirical_p_value(score: float, null_scores: np.ndarray) -> float:
    """Share of same-distribution scores at least as large (with the observed one counted)."""
    return float((1 + np.sum(null_scores >= score)) / (1 + len(null_scores)))


@dataclass
class EvidentlyDetector:
    """One evidently method on one space, with its same-distribution score distribution."""

    method_name: EvidentlyMethod
    space: str
    reference: np.ndarray  # reduced
    null_scores: np.ndarray
    p_threshold: float

    @property
    def name(self) -> str:
        return f"evidently-{self.method_name}"

    @classmethod
    def fit(
        cls,
        method_name: EvidentlyMethod,
        space: str,
        reference: np.ndarray,
        batch_size: int,
        config: DriftConfig,
    ) -> EvidentlyDetector:
        method = evidently_method(method_name)
        rng = np.random.default_rng(config.seed)
        size = min(batch_size, len(reference) // 2)
        scores = []
        for _ in range(config.calibration_draws):
            order = rng.permutation(len(reference))
            scores.append(method_score(method, reference[order[size:]], reference[order[:size]]))
        return cls(method_name, space, reference, np.asarray(scores, dtype=np.float64), config.p_val)

    def predict(self, embeddings: np.ndarray) -> DriftResult:
        score = method_score(evidently_method(self.method_name), self.reference, embeddings)
        p_value = empirical_p_value(score, self.null_scores)
        return DriftResult(
            detector=self.name,
            space=self.space,
            is_drift=p_value <= self.p_threshold,
            distance=score,
            p_val=p_value,
            threshold=self.p_threshold,
            batch_size=len(embeddings),
        )


@dataclass
class SpaceReference:
    """The reference of one space: its PCA reducer and its reduced embeddings."""

    space: str
    reducer: Reducer
    reduced: np.ndarray

    @property
    def dimension(self) -> int:
        return self.reducer.input_dimension

    @classmethod
    def fit(cls, space: str, embeddings: np.ndarray, config: DriftConfig) -> SpaceReference:
        if len(embeddings) < 8:
            raise ConfigError(
                f"the {space!r} reference has {len(embeddings)} texts: drift needs at least 8 "
                "(use a larger dataset version as the reference)"
            )
        reducer = Reducer.fit(embeddings, config.reduced_dimension, config.reducer, seed=config.seed)
        return cls(space=space, reducer=reducer, reduced=reducer.transform(embeddings))

    def save(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.reducer.save(folder / "reducer.npz")
        np.save(folder / "reference.npy", self.reduced)

    @classmethod
    def load(cls, folder: Path, space: str) -> SpaceReference:
        return cls(
            space=space,
            reducer=Reducer.load(folder / "reducer.npz"),
            reduced=np.load(folder / "reference.npy"),
        )


def fit_evidently(reference: SpaceReference, batch_size: int, config: DriftConfig) -> list[EvidentlyDetector]:
    """evidently's detectors for batches of ``batch_size`` (their calibration depends on it)."""
    return [
        EvidentlyDetector.fit(method, reference.space, reference.reduced, batch_size, config)
        for method in config.evidently_methods
    ]


def _calibration_file(folder: Path, batch_size: int) -> Path:
    return folder / f"calibration-n{batch_size}.json"


def save_calibration(folder: Path, batch_size: int, detectors: list[EvidentlyDetector]) -> None:
    calibration = {
        d.method_name: {"null_scores": d.null_scores.tolist(), "p_val": d.p_threshold} for d in detectors
    }
    _calibration_file(folder, batch_size).write_text(json.dumps(calibration), encoding="utf-8")


def load_calibration(
    folder: Path, reference: SpaceReference, batch_size: int, config: DriftConfig
) -> list[EvidentlyDetector] | None:
    """The saved detectors for this batch size, or None when they were not fitted for it."""
    path = _calibration_file(folder, batch_size)
    if not path.exists():
        return None
    calibration = json.loads(path.read_text(encoding="utf-8"))
    if set(calibration) != set(config.evidently_methods):
        return None
    return [
        EvidentlyDetector(
            method, reference.space, reference.reduced, np.asarray(item["null_scores"]), config.p_val
        )
        for method, item in calibration.items()
    ]


@dataclass
class SpaceDetectors:
    """The detectors of one space; ``predict`` takes raw (unreduced) embeddings."""

    reference: SpaceReference
    detectors: list[Detector]

    @property
    def space(self) -> str:
        return self.reference.space

    @property
    def dimension(self) -> int:
        return self.reference.dimension

    def check_dimension(self, embeddings: np.ndarray) -> None:
        if embeddings.ndim != 2 or embeddings.shape[1] != self.dimension:
            got = embeddings.shape[1] if embeddings.ndim == 2 else f"shape {embeddings.shape}"
            raise ConfigError(
                f"embeddings of dimension {got} do not match the {self.space!r} reference "
                f"({self.dimension}): "
                "embed with the embedder the reference was fitted with"
            )

    def predict(self, embeddings: np.ndarray) -> list[DriftResult]:
        self.check_dimension(embeddings)
        reduced = self.reference.reducer.transform(embeddings)
        return [detector.predict(reduced) for detector in self.detectors]
