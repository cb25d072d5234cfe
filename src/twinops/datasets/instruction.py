"""The instruction dataset by back-translation: the author's text is the answer, a model writes the ask.

For every chunk the generator writes the request the author's passage answers; the answer is the
passage itself, lightly trimmed. Filters drop too short/long instructions, refusals and
boilerplate ("summarize the text"), and near-duplicate instructions (MinHash over word n-grams).
Optional Self-Instruct augmentation adds a second request per chunk in the style of a seed task.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from twinops.datasets.corpus import Corpus
from twinops.datasets.generators import Generated, Generator, ProgressCallback
from twinops.datasets.jobs import DatasetJob
from twinops.datasets.prompts import (
    INSTRUCTION_PROMPT,
    SELF_INSTRUCT_PROMPT,
    PromptTemplate,
    load_prompt,
    load_seed_tasks,
)
from twinops.datasets.text import is_boilerplate, is_refusal, trim_answer, truncate_words, word_ngrams, words
from twinops.domain import Chunk
from twinops.domain.hashing import content_hash

_MINHASH_PERMUTATIONS = 64


@dataclass(frozen=True)
class InstructionExample:
    """One (instruction, author's answer) pair and where the answer came from."""

    instruction: str
    answer: str
    document_id: str
    chunk_id: str
    origin: str  # "backtranslation" or "self_instruct"

    def to_row(self) -> dict:
        """Contract 4: TRL conversational prompt/completion plus the source document id."""
        return {
            "prompt": [{"role": "user", "content": self.instruction}],
            "completion": [{"role": "assistant", "content": self.answer}],
            "document_id": self.document_id,
        }


def instruction_prompts(job: DatasetJob) -> list[PromptTemplate]:
    """The prompt templates this job uses (their hashes go into the dataset lineage)."""
    prompts = [load_prompt(INSTRUCTION_PROMPT)]
    if job.self_instruct:
        prompts.append(load_prompt(SELF_INSTRUCT_PROMPT))
    return prompts


def generate_instructions(
    corpus: Corpus,
    generator: Generator,
    job: DatasetJob,
    drops: Counter[str],
    *,
    on_progress: ProgressCallback | None = None,
) -> list[InstructionExample]:
    """Back-translated (and optionally Self-Instruct) examples for the corpus, filtered, in chunk order."""
    usable: list[tuple[Chunk, str]] = []
    for chunk in corpus.chunks:
        answer = trim_answer(chunk.content, job.max_answer_chars)
        if len(words(answer)) < job.min_answer_words:
            drops["instruction:answer_too_short"] += 1
            continue
        usable.append((chunk, answer))

    passages = [truncate_words(chunk.content, job.prompt_max_words) for chunk, _ in usable]
    items = [
        {"title": corpus.titles.get(chunk.document_id, ""), "text": passage}
        for (chunk, _), passage in zip(usable, passages, strict=True)
    ]
    generated: list[tuple[Chunk, str, Generated, str]] = [
        (chunk, answer, result, "backtranslation")
        for (chunk, answer), result in zip(
            usable,
            generator.generate(load_prompt(INSTRUCTION_PROMPT), items, on_progress=on_progress),
            strict=True,
        )
    ]
    if job.self_instruct:
        seeds = load_seed_tasks().tasks
        # Each chunk gets one seed style, chosen by its id so the choice is reproducible.
        seed_items = [
            {"example": seeds[int(content_hash(chunk.id)[:8], 16) % len(seeds)].example, "text": passage}
            for (chunk, _), passage in zip(usable, passages, strict=True)
        ]
        results = generator.generate(load_prompt(SELF_INSTRUCT_PROMPT), seed_items, on_progress=on_progress)
        generated += [
            (chunk, answer, result, "self_instruct")
            for (chunk, answer), result in zip(usable, results, strict=True)
        ]
    candidates = []
    for chunk, answer, result, origin in generated:
        if result.text is None:
            drops[f"instruction:{result.dropped}"] += 1
            continue
        candidates.append(
            InstructionExample(_normalize(result.text), answer, chunk.document_id, chunk.id, origin)
        )
    return filter_instructions(candidates, job, drops)


def _normalize(instruction: str) -> str:
    return re.sub(r"\s+", " ", instruction).strip().strip("\"'`").strip()


def filter_instructions(
    candidates: Sequence[InstructionExample], job: DatasetJob, drops: Counter[str]
) -> list[InstructionExample]:
    """Keep candidates that pass the length, refusal, boilerplate and near-duplicate filters."""
    from datasketch import MinHash, MinHashLSH

    index = MinHashLSH(threshold=job.near_duplicate_threshold, num_perm=_MINHASH_PERMUTATIONS)
    signatures: dict[str, MinHash] = {}
    kept: list[InstructionExample] = []
    for example in candidates:
        reason = _rejection(example.instruction, job)
        if reason is None:
            signature = MinHash(num_perm=_MINHASH_PERMUTATIONS, seed=1)
            for gram in word_ngrams(example.instruction, 1) | word_ngrams(example.instruction, 2):
                signature.update(" ".join(gram).encode("utf-8"))
            # LSH proposes candidates; the exact MinHash estimate decides, so LSH misfires do not drop.
            if any(
                signatures[key].jaccard(signature) >= job.near_duplicate_threshold
                for key in index.query(signature)
            ):
                reason = "near_duplicate"
            else:
                key = str(len(signatures))
                signatures[key] = signature
                index.insert(key, signature)
        if reason:
            drops[f"instruction:{reason}"] += 1
            continue
        kept.append(example)
    return kept


def _rejection(instruction: str, job: DatasetJob) -> str | None:
    count = len(words(instruction))
    if count < job.min_instruction_words or count > job.max_instruction_words:
        return "instruction_length"
    if is_refusal(instruction):
        return "refusal"
    if is_boilerplate(instruction):
        return "boilerplate"
    return None
