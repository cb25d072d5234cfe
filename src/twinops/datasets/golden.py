"""The golden set: held-out documents, a canary string, and decontamination of the training sets.

The split is by source document, never by row, so no passage of a golden document can reach
training through a sibling chunk. Membership is decided per document from a hash of its id (and
the job seed), so a document stays on its side when the corpus grows. The canary is a unique
string recorded with the golden set; finding it in training data means evaluation data leaked
into the corpus, and the build stops.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar

from twinops.datasets.text import word_ngrams
from twinops.domain.hashing import content_hash, stable_uuid
from twinops.errors import TwinopsError

T = TypeVar("T")
_HASH_SPACE = 16**16


class CanaryLeak(TwinopsError):
    """The golden set's canary string was found in training data."""


def split_documents(document_ids: Iterable[str], fraction: float, seed: int = 0) -> set[str]:
    """The held-out (golden) document ids: at least one, never all (when there are two or more)."""
    ids = sorted(set(document_ids))
    if len(ids) < 2:
        raise TwinopsError(
            f"the corpus has {len(ids)} document(s); a golden set needs at least 2 to hold one out: "
            "collect more writing with `twinops etl`, then run `twinops features`"
        )
    scores = {doc: int(content_hash("golden-split", seed, doc)[:16], 16) / _HASH_SPACE for doc in ids}
    golden = {doc for doc, score in scores.items() if score < fraction}
    ranked = sorted(ids, key=lambda doc: scores[doc])
    if not golden:
        golden = {ranked[0]}
    if len(golden) == len(ids):
        golden.discard(ranked[-1])
    return golden


def make_canary(*parts: Any) -> str:
    """A canary derived from the golden set's content, so the same golden set has the same canary."""
    return f"TWINOPS-CANARY-{stable_uuid('canary', *parts)}"


def golden_row(
    instruction: str,
    reference: str,
    document_id: str,
    chunk_id: str,
    origin: str = "instruction",
    *,
    source: str = "",
    paraphrased: bool = False,
) -> dict:
    """Contract 4: one held-out (instruction, reference answer, source) row.

    ``origin``: ``instruction`` (a question or request of the chunk, checked as a person's would be;
    the LLMs answer these), ``paraphrase`` (a question a person wrote in their own words; answered
    too) or ``probe`` (a keyword query of one sentence of the chunk; retrieval and perplexity use
    every row). ``source``: who wrote an instruction, ``generator``, ``template`` or ``written``.
    ``paraphrased``: the question shares at most ``max_paraphrase_overlap`` of its content words
    with the chunk (``datasets.paraphrase``); the evaluation scores retrieval on these apart.
    """
    row = {
        "instruction": instruction,
        "reference": reference,
        "document_id": document_id,
        "chunk_id": chunk_id,
        "origin": origin,
        "paraphrased": paraphrased,
    }
    return {**row, "source": source} if source else row


class Decontaminator:
    """Measures how much of a text's word n-grams also occur in the golden set."""

    def __init__(self, golden_texts: Iterable[str], n: int) -> None:
        self.n = n
        self._golden: set[tuple[str, ...]] = set()
        for text in golden_texts:
            self._golden |= word_ngrams(text, n)

    def overlap(self, text: str) -> float:
        grams = word_ngrams(text, self.n)
        if not grams or not self._golden:
            return 0.0
        return len(grams & self._golden) / len(grams)

    def filter(
        self,
        items: Sequence[T],
        text_of: Callable[[T], str],
        threshold: float,
        drops: Counter[str],
        kind: str,
    ) -> list[T]:
        kept = []
        for item in items:
            if self.overlap(text_of(item)) >= threshold:
                drops[f"{kind}:contaminated"] += 1
            else:
                kept.append(item)
        return kept


def _strings(value: Any) -> Iterable[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for inner in value.values():
            yield from _strings(inner)
    elif isinstance(value, list | tuple):
        for inner in value:
            yield from _strings(inner)


def assert_no_canary(training: dict[str, Sequence[dict]], canaries: Iterable[str]) -> None:
    """Raise ``CanaryLeak`` if any canary occurs anywhere in any training row (every string field)."""
    markers = [canary for canary in canaries if canary]
    for name, rows in training.items():
        for number, row in enumerate(rows):
            for text in _strings(row):
                for canary in markers:
                    if canary in text:
                        raise CanaryLeak(
                            f"canary {canary} of the golden set appears in training data ({name}, row "
                            f"{number}): evaluation data leaked into the corpus; remove that document "
                            "from the sources and re-run `twinops features`"
                        )
