"""Decontamination: keep golden (evaluation) text out of the training features.

A document is contaminated when it contains the golden set's canary string, or at least
``decontam_threshold`` of the word n-grams of any golden item. The golden set comes from a JSONL
file (fields ``instruction``/``reference``/``text``) or a GOLDEN DatasetVersion (its ``test.jsonl``).
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

from twinops.errors import ConfigError
from twinops.features.dedup import normalized_text
from twinops.features.gates import Reason, Rejection
from twinops.features.jobs import GateConfig

_TEXT_FIELDS = ("instruction", "reference", "text", "answer", "completion")


def ngrams(text: str, size: int) -> set[tuple[str, ...]]:
    words = normalized_text(text).split()
    return {tuple(words[i : i + size]) for i in range(len(words) - size + 1)}


def read_golden_jsonl(path: Path) -> list[str]:
    """Golden texts from a JSONL file; each listed text field is one item."""
    if not path.exists():
        raise ConfigError(f"golden set {path} does not exist: fix gates.golden_path")
    texts = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as error:
            raise ConfigError(f"golden set {path} line {number} is not JSON: fix the file") from error
        texts += [row[field] for field in _TEXT_FIELDS if isinstance(row.get(field), str) and row[field]]
    return texts


class Decontaminator:
    """An inverted n-gram index over golden items, probed with each document."""

    def __init__(self, golden_texts: list[str], config: GateConfig, canary: str | None = None) -> None:
        self._size = config.decontam_ngram
        self._threshold = config.decontam_threshold
        self._canary = canary
        self._item_sizes: list[int] = []
        self._index: dict[tuple[str, ...], list[int]] = defaultdict(list)
        for item, text in enumerate(golden_texts):
            grams = ngrams(text, self._size)
            self._item_sizes.append(len(grams))
            for gram in grams:
                self._index[gram].append(item)

    @property
    def size(self) -> int:
        return len(self._item_sizes)

    def check(self, text: str) -> Rejection | None:
        if self._canary and self._canary in text:
            return Rejection(reason=Reason.CONTAMINATED, detail="contains the golden set's canary string")
        shared: dict[int, int] = defaultdict(int)
        for gram in ngrams(text, self._size):
            for item in self._index.get(gram, ()):
                shared[item] += 1
        for item, count in shared.items():
            overlap = count / max(self._item_sizes[item], 1)
            if overlap >= self._threshold:
                return Rejection(
                    reason=Reason.CONTAMINATED,
                    detail=f"{overlap:.0%} of golden item {item}'s {self._size}-grams",
                )
        return None
