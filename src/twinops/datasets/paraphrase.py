"""Paraphrased questions: what a person asks about a passage in their own words, not the passage's.

Most golden and training questions share most of their words with the chunk they came from (the
passage view's instruction, the keyword probes), so a ranker can win on them by term overlap
alone, and a drift reference made of them flags the first real user as drift. People write
otherwise: "how do I stop my quantized model getting worse?" about a passage on GPTQ calibration.

``lexical_overlap`` measures it: the share of a question's content words (``requests.content_words``)
whose stem, its first ``STEM_CHARS`` letters, is also a stem of the passage's content words ("deploy"
meets "deployment"; a few unrelated words that start alike meet too, which only makes the measure
stricter). A question is *paraphrased* when its overlap is at most
``DatasetJob.max_paraphrase_overlap`` (default ``MAX_PARAPHRASE_OVERLAP``: at most a third).

Where they come from (``DatasetJob.paraphrased_questions``): a JSONL of questions people wrote about
the corpus, each naming its document and quoting the words of the passage that answers it
(``evidence``), so the answering chunk is found by the quote, never by the retrieval being measured.
The demo corpus ships one (``data/demo-questions.jsonl``). No local model writes such questions:
SmolLM2-135M's attempts are not questions a person would ask, and rewriting a passage's words
through embedding neighbours gives word salad ("why would anyone bother with warships terrible
models?"). The dataset step marks every golden question by its overlap (``paraphrased``), so
the questions of a generator good enough to paraphrase (``TWINOPS_GENERATOR_URL``) count too.

The rows (origin ``paraphrase``, source ``written``): for held-out documents, golden rows that the
evaluation scores retrieval on apart (``golden_paraphrased_*``, which the reranker's gate requires
not to get worse); for training documents, instruction rows (so the drift reference, which reads
the instruction set's questions, holds natural questions too) and reranker queries. A question
above the overlap threshold, or whose quote no chunk of its document holds, is counted as dropped.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from twinops.datasets.instruction import InstructionExample, Passage
from twinops.datasets.requests import content_words
from twinops.errors import ConfigError, first_problem
from twinops.infra.config_files import jsonl_rows

PARAPHRASE = "paraphrase"  # the origin of a paraphrased row
WRITTEN = "written"  # its source: a person wrote the question
STEM_CHARS = 5
MAX_PARAPHRASE_OVERLAP = 0.34


def stem(word: str) -> str:
    return word.casefold()[:STEM_CHARS]


def stems(text: str) -> set[str]:
    return {stem(word) for word in content_words(text)}


def lexical_overlap(question: str, passage: str) -> float:
    """Share of ``question``'s content words whose stem is a stem of ``passage`` (0 without any)."""
    asked = [stem(word) for word in content_words(question)]
    if not asked:
        return 0.0
    found = stems(passage)
    return sum(word in found for word in asked) / len(asked)


def is_paraphrased(question: str, passage: str, max_overlap: float = MAX_PARAPHRASE_OVERLAP) -> bool:
    return lexical_overlap(question, passage) <= max_overlap


class WrittenQuestion(BaseModel):
    """One line of a paraphrased-questions file."""

    model_config = ConfigDict(extra="forbid")

    document: str = Field(min_length=1, description="The document's source file name (or its source URI).")
    question: str = Field(min_length=3, description="The question, in the asker's words.")
    evidence: str = Field(
        min_length=10, description="Words quoted exactly from the passage that answers it (6-20 words)."
    )


def read_written_questions(path: Path) -> list[WrittenQuestion]:
    """The questions of ``path``; a malformed line is one clear error naming it."""
    if not path.is_file():
        raise ConfigError(
            f"paraphrased questions file {path} does not exist: pass a JSONL of "
            '{"document", "question", "evidence"} lines (dataset option paraphrased_questions)'
        )
    questions = []
    for number, row in jsonl_rows(path):
        try:
            questions.append(WrittenQuestion.model_validate(row))
        except ValidationError as error:
            problem = first_problem(error)
            raise ConfigError(
                f"{path} line {number}: {problem.where or 'the line'}: {problem.message}: each line is "
                '{"document": FILE, "question": TEXT, "evidence": QUOTE}'
            ) from error
    return questions


def _folded(text: str) -> str:
    return " ".join(text.split()).casefold()


def _document_key(source: str) -> str:
    """What a question's ``document`` is matched on: the last part of the source's path or URL."""
    return source.rstrip("/").rsplit("/", 1)[-1]


def paraphrase_examples(
    passages: Sequence[Passage],
    questions: Sequence[WrittenQuestion],
    drops: Counter[str],
    *,
    max_overlap: float = MAX_PARAPHRASE_OVERLAP,
    golden_documents: set[str] = frozenset(),
) -> list[InstructionExample]:
    """Each written question answered by the passage that holds its quote (origin ``paraphrase``);
    one whose quote no passage of its document holds, or that shares too many words with the
    passage, is counted under ``<golden|instruction>:paraphrase_*`` and left out."""
    by_document: dict[str, list[Passage]] = {}
    for passage in passages:
        by_document.setdefault(_document_key(passage.chunk.source_url), []).append(passage)
    examples = []
    for written in questions:
        candidates = by_document.get(_document_key(written.document), [])
        quote = _folded(written.evidence)
        holding = next((p for p in candidates if quote in _folded(p.chunk.content)), None)
        held_out = bool(candidates) and candidates[0].chunk.document_id in golden_documents
        kind = "golden" if held_out else "instruction"
        if holding is None:
            drops[f"{kind}:paraphrase_unmatched"] += 1
            continue
        if not is_paraphrased(written.question, holding.answer, max_overlap):
            drops[f"{kind}:paraphrase_overlap"] += 1
            continue
        chunk = holding.chunk
        answered = (holding.answer, chunk.document_id, chunk.id)
        examples.append(InstructionExample(written.question, *answered, PARAPHRASE, WRITTEN))
    return examples
