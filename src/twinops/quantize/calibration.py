"""Author texts for GPTQ calibration and for the held-out perplexity, from the feature artifacts.

Reads plain files only (no MongoDB, no Qdrant), so the same code runs in ``.venv-quantize`` and in
a container: a features folder's ``chunks.jsonl`` (contract 2), an instruction dataset folder's
``train.jsonl`` (the assistant completions, contract 4), or a .txt/.jsonl of texts.

A dataset folder gives its train split only: its test split holds the golden (held-out) documents,
which the evaluation measures the twin on, so GPTQ must not calibrate on them.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

from twinops.errors import ConfigError, NotFound

MIN_CHARS = 40  # shorter texts carry too few tokens to calibrate or measure anything


def _row_text(row: dict) -> str:
    for key in ("content", "text", "reference"):
        if isinstance(row.get(key), str):
            return row[key]
    completion = row.get("completion") or row.get("chosen")
    if isinstance(completion, list) and completion and isinstance(completion[-1], dict):
        return str(completion[-1].get("content", ""))
    return ""


def _read_jsonl(path: Path) -> list[str]:
    texts = []
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                texts.append(_row_text(json.loads(line)))
            except json.JSONDecodeError as error:
                raise ConfigError(
                    f"{path}:{number} is not JSON ({error.msg}): fix or regenerate the file"
                ) from error
    return texts


def read_texts(path: Path) -> list[str]:
    """Every usable author text under ``path`` (see the module docstring for the layouts)."""
    path = path.expanduser()
    if not path.exists():
        raise NotFound(f"calibration source {path} does not exist: pass a features folder or chunks.jsonl")
    if path.is_dir():
        candidates = [path / "chunks.jsonl", path / "train.jsonl"]
        files = [candidate for candidate in candidates if candidate.exists()]
        if not files:
            raise NotFound(f"{path} holds no chunks.jsonl or train.jsonl: pass a features or dataset folder")
        texts = [text for file in files for text in _read_jsonl(file)]
    elif path.suffix == ".jsonl":
        texts = _read_jsonl(path)
    else:
        texts = path.read_text(encoding="utf-8").split("\n\n")
    return [text.strip() for text in texts if len(text.strip()) >= MIN_CHARS]


def split_texts(
    texts: list[str], *, calibration: int, held_out: int, seed: int
) -> tuple[list[str], list[str]]:
    """(calibration, held-out): disjoint, drawn with ``seed`` so a rerun measures the same texts."""
    unique = list(dict.fromkeys(texts))
    if len(unique) < 2:
        raise ConfigError(
            f"only {len(unique)} usable author text(s) (>= {MIN_CHARS} chars) for GPTQ: need at least 2 "
            "(one to calibrate, one to measure); run the feature pipeline first"
        )
    random.Random(seed).shuffle(unique)  # noqa: S311 - a reproducible draw, not crypto
    held = min(held_out, max(1, len(unique) // 4))
    return unique[held : held + calibration], unique[:held]


def latest_features_chunks(home: Path) -> Path | None:
    """The newest ``TWINOPS_HOME/features/<version>/chunks.jsonl`` (the default calibration corpus)."""
    found = sorted((home / "features").glob("*/chunks.jsonl"), key=lambda file: file.stat().st_mtime)
    return found[-1] if found else None
