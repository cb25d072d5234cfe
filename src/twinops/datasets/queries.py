"""Questions users asked, as instructions the author's own passages answer (``DatasetJob.queries``).

When the drift detector finds that the twin is asked things unlike what it was trained on, the
retraining trigger saves those texts as JSONL and starts the twin pipeline with
``dataset_options.queries`` naming that file (relative to TWINOPS_HOME, the volume the detector
and the pipeline steps share). Each question is matched with the author's closest
chunk of the corpus (cosine of the project's embeddings): when it is at least
``min_query_similarity`` close, the pair (question, the passage cleaned and trimmed as any answer
is) is an instruction example of origin and source ``query``; a question nothing of the author's
answers is dropped and counted (``instruction:query_unmatched``), since the twin has nothing of
the author's to learn from for it. The examples then go through the same filters, golden split
and decontamination as the back-generated ones.

The file holds one JSON string per line, or objects with a ``text`` or ``question`` string (what
``monitoring.retrain`` writes).
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np

from twinops.datasets.corpus import Corpus
from twinops.datasets.instruction import InstructionExample, filter_instructions
from twinops.datasets.jobs import DatasetJob
from twinops.datasets.text import clean_passage, trim_answer, words
from twinops.errors import ConfigError
from twinops.infra.config_files import jsonl_rows
from twinops.settings import Settings

QUERY_ORIGIN = "query"


def read_queries(path: Path) -> list[str]:
    """The questions of ``path`` in order, each once; a malformed line is one clear error."""
    if not path.is_file():
        raise ConfigError(f"dataset queries file {path} does not exist: pass a JSONL of questions")
    found: list[str] = []
    for number, row in jsonl_rows(path):
        text = row.get("text") or row.get("question") or "" if isinstance(row, dict) else row
        if not isinstance(text, str):
            raise ConfigError(f"{path} line {number} is neither a string nor an object with a `text` string")
        if text.strip():
            found.append(text.strip())
    return list(dict.fromkeys(found))


def query_instructions(
    corpus: Corpus, job: DatasetJob, settings: Settings, drops: Counter[str]
) -> list[InstructionExample]:
    """Instruction examples for ``job.queries`` (empty without one), filtered like the others."""
    if not job.queries:
        return []
    from twinops.models.loaders import load_embedder

    questions = read_queries(settings.under_home(job.queries))
    usable = [chunk for chunk in corpus.chunks if len(words(chunk.content)) >= job.min_answer_words]
    if not questions or not usable:
        return []
    embedder = load_embedder(settings)
    asked = embedder.encode(questions, normalize_embeddings=True, batch_size=job.batch_size)
    passages = embedder.encode(
        [chunk.content for chunk in usable], normalize_embeddings=True, batch_size=job.batch_size
    )
    similarity = np.asarray(asked) @ np.asarray(passages).T
    candidates = []
    for question, row in zip(questions, similarity, strict=True):
        best = int(np.argmax(row))
        if row[best] < job.min_query_similarity:
            drops["instruction:query_unmatched"] += 1
            continue
        chunk = usable[best]
        answer = trim_answer(clean_passage(chunk.content), job.max_answer_chars)
        candidates.append(
            InstructionExample(question, answer, chunk.document_id, chunk.id, QUERY_ORIGIN, QUERY_ORIGIN)
        )
    return filter_instructions(candidates, job, drops)
