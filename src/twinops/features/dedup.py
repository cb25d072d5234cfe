"""Exact (normalized hash) and near (MinHash LSH, datasketch) duplicate detection.

The index is seeded with the documents already kept by earlier runs (their hashes and MinHash
signatures are stored with the feature state), so an incremental run catches a new document
that repeats an old one. Within a run, the first document in processing order is the original.
"""

from __future__ import annotations

import hashlib
import re
from functools import lru_cache

import numpy as np

from twinops.features.gates import Reason, Rejection
from twinops.features.jobs import GateConfig

_NON_WORD = re.compile(r"[\W_]+", re.UNICODE)
_SCHEME = "affine32"


def normalized_text(text: str) -> str:
    """Casefolded words only: what "the same text" means for exact duplicates."""
    return " ".join(_NON_WORD.sub(" ", text.casefold()).split())


def normalized_hash(text: str) -> str:
    return hashlib.sha256(normalized_text(text).encode("utf-8")).hexdigest()


def shingles(text: str, size: int, *, normalized: bool = False) -> list[bytes]:
    """Word ``size``-grams of the normalized text (``normalized=True``: ``text`` already is)."""
    words = (text if normalized else normalized_text(text)).split()
    if len(words) <= size:
        return [" ".join(words).encode("utf-8")] if words else []
    return [" ".join(words[i : i + size]).encode("utf-8") for i in range(len(words) - size + 1)]


@lru_cache(maxsize=8)
def _permutations(num_perm: int):
    from datasketch import MinHash

    # Generating the permutations is the slow part of MinHash(); do it once per size.
    return MinHash(num_perm=num_perm, scheme=_SCHEME).permutations


def minhash(text: str, *, num_perm: int = 128, shingle_words: int = 5, normalized: bool = False):
    from datasketch import MinHash

    sketch = MinHash(num_perm=num_perm, permutations=_permutations(num_perm), scheme=_SCHEME)
    sketch.update_batch(shingles(text, shingle_words, normalized=normalized))
    return sketch


def signature_bytes(sketch) -> bytes:
    return np.asarray(sketch.hashvalues, dtype=np.uint64).tobytes()


def sketch_from_bytes(data: bytes, num_perm: int):
    from datasketch import MinHash

    values = np.frombuffer(data, dtype=np.uint64)
    if len(values) != num_perm:
        raise ValueError(f"stored signature has {len(values)} permutations, expected {num_perm}")
    return MinHash(num_perm=num_perm, hashvalues=values, scheme=_SCHEME)


class Deduplicator:
    """Remembers kept documents; ``check`` says whether a new one repeats any of them."""

    def __init__(self, config: GateConfig) -> None:
        from datasketch import MinHashLSH

        self._config = config
        self._exact: dict[str, str] = {}
        self._sketches: dict[str, object] = {}
        self._lsh = MinHashLSH(threshold=config.near_dup_threshold, num_perm=config.minhash_permutations)

    def __len__(self) -> int:
        return len(self._exact)

    def remember(self, document_id: str, exact_hash: str, sketch) -> None:
        self._exact.setdefault(exact_hash, document_id)
        if self._config.near_dedup and document_id not in self._sketches:
            self._sketches[document_id] = sketch
            self._lsh.insert(document_id, sketch)

    def sketch(self, text: str, *, normalized: bool = False):
        return minhash(
            text,
            num_perm=self._config.minhash_permutations,
            shingle_words=self._config.shingle_words,
            normalized=normalized,
        )

    def check(self, document_id: str, text: str) -> tuple[Rejection | None, str, object]:
        """(rejection or None, exact hash, MinHash) for ``text``; remembers it when kept."""
        normalized = normalized_text(text)
        exact_hash = hashlib.sha256(normalized.encode("utf-8")).hexdigest()
        sketch = self.sketch(normalized, normalized=True)
        original = self._exact.get(exact_hash)
        if self._config.exact_dedup and original is not None and original != document_id:
            return (
                Rejection(reason=Reason.EXACT_DUPLICATE, detail=f"same text as {original}"),
                exact_hash,
                sketch,
            )
        if self._config.near_dedup:
            best_id, best = None, 0.0
            for candidate in self._lsh.query(sketch):
                if candidate == document_id:
                    continue
                # LSH candidates are approximate: confirm with the estimated Jaccard.
                similarity = sketch.jaccard(self._sketches[candidate])
                if similarity >= self._config.near_dup_threshold and similarity > best:
                    best_id, best = candidate, similarity
            if best_id is not None:
                return (
                    Rejection(reason=Reason.NEAR_DUPLICATE, detail=f"Jaccard≈{best:.2f} with {best_id}"),
                    exact_hash,
                    sketch,
                )
        self.remember(document_id, exact_hash, sketch)
        return None, exact_hash, sketch
