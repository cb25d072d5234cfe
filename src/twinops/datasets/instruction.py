"""The instruction dataset: every chunk of the author's text is an answer, and each gets its ask.

For every chunk long enough to answer anything (``min_answer_words``), the answer is the author's
passage (``text.clean_passage``: no sentence cut at its edges, lightly trimmed). Each chunk gives
several rows, one per view of ``templates`` (the whole passage, each paragraph, the continuation
after its first sentence; plus one row per document with its whole text), so a corpus of 54 chunks
makes hundreds of rows, not one per chunk.

The passage view's instruction is back-translated by the generator when it writes a question or a
request (``requests.request_problem``; near-duplicates of an earlier one fail too), else built from
the passage by a template. Each row records its ``source``: ``generator``, ``template``, or
``query`` (a user's question, ``datasets.queries``). A generator instruction that fails is counted
in ``drops`` as ``instruction:generator_<reason>`` and its row rebuilt from the template, so no chunk
is lost to a weak generator; only a too-short answer drops a row (``instruction:answer_too_short``).
Optional Self-Instruct augmentation adds a second request per chunk in the style of a seed task:
the generator's when it passes the same checks, else the seed style filled with a key phrase.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from twinops.datasets.budget import BUDGET_SPENT, GenerationRun
from twinops.datasets.corpus import Corpus
from twinops.datasets.jobs import DatasetJob
from twinops.datasets.prompts import (
    INSTRUCTION_PROMPT,
    SELF_INSTRUCT_PROMPT,
    PromptTemplate,
    load_prompt,
    load_seed_tasks,
)
from twinops.datasets.requests import request_problem
from twinops.datasets.templates import (
    continuation,
    document_instruction,
    paragraph_instruction,
    passage_instruction,
)
from twinops.datasets.text import (
    clean_passage,
    key_phrases,
    paragraphs,
    trim_answer,
    truncate_words,
    word_ngrams,
    words,
)
from twinops.domain import Chunk
from twinops.domain.hashing import content_hash

_MINHASH_PERMUTATIONS = 64
GENERATOR = "generator"
TEMPLATE = "template"
# Origins: the view of the author's text a row answers with, or where its question came from.
PASSAGE = "passage"
SELF_INSTRUCT = "self_instruct"


@dataclass(frozen=True)
class InstructionExample:
    """One (instruction, author's answer) pair, which part of the text answers, and who asked."""

    instruction: str
    answer: str
    document_id: str
    chunk_id: str
    origin: str  # a view of templates.VIEWS, "self_instruct" or "query"
    source: str = TEMPLATE  # "generator", "template" or "query"

    def to_row(self) -> dict:
        """Contract 4: TRL conversational prompt/completion, the source document id and ``source``."""
        return {
            "prompt": [{"role": "user", "content": self.instruction}],
            "completion": [{"role": "assistant", "content": self.answer}],
            "document_id": self.document_id,
            "source": self.source,
        }


def instruction_prompts(job: DatasetJob) -> list[PromptTemplate]:
    """The prompt templates this job uses (their hashes go into the dataset lineage)."""
    prompts = [load_prompt(INSTRUCTION_PROMPT)]
    if job.self_instruct:
        prompts.append(load_prompt(SELF_INSTRUCT_PROMPT))
    return prompts


@dataclass(frozen=True)
class Passage:
    """A chunk whose cleaned text is long enough to be an answer."""

    chunk: Chunk
    answer: str
    title: str
    document: str  # the whole document's text (its repeated phrases make the better topics)


def usable_passages(corpus: Corpus, job: DatasetJob, drops: Counter[str]) -> list[Passage]:
    """The chunks that can answer something, in corpus order; the others are counted as dropped."""
    usable = []
    for chunk in corpus.chunks:
        answer = trim_answer(clean_passage(chunk.content), job.max_answer_chars)
        if len(words(answer)) < job.min_answer_words:
            drops["instruction:answer_too_short"] += 1
            continue
        title, document = (
            corpus.titles.get(chunk.document_id, ""),
            corpus.documents.get(chunk.document_id, ""),
        )
        usable.append(Passage(chunk, answer, title, document))
    return usable


class InstructionChecker:
    """``request_problem`` plus near-duplicates of the instructions accepted so far (MinHash LSH)."""

    def __init__(self, job: DatasetJob) -> None:
        from datasketch import MinHashLSH

        self.job = job
        self._index = MinHashLSH(threshold=job.near_duplicate_threshold, num_perm=_MINHASH_PERMUTATIONS)
        self._signatures: dict = {}

    def problem(self, instruction: str, passage: str = "") -> str | None:
        """Why ``instruction`` is unusable (it is not recorded then), or None (it is recorded)."""
        reason = request_problem(
            instruction,
            passage,
            min_words=self.job.min_instruction_words,
            max_words=self.job.max_instruction_words,
        )
        if reason is not None:
            return reason
        from datasketch import MinHash

        signature = MinHash(num_perm=_MINHASH_PERMUTATIONS, seed=1)
        for gram in word_ngrams(instruction, 1) | word_ngrams(instruction, 2):
            signature.update(" ".join(gram).encode("utf-8"))
        # LSH proposes candidates; the exact MinHash estimate decides, so LSH misfires do not drop.
        if any(
            self._signatures[key].jaccard(signature) >= self.job.near_duplicate_threshold
            for key in self._index.query(signature)
        ):
            return "near_duplicate"
        key = str(len(self._signatures))
        self._signatures[key] = signature
        self._index.insert(key, signature)
        return None


def normalize_instruction(instruction: str) -> str:
    return re.sub(r"\s+", " ", instruction).strip().strip("\"'`").strip()


def _generate_checked(
    passages: Sequence[Passage],
    run: GenerationRun,
    job: DatasetJob,
    prompt: PromptTemplate,
    items: list[dict[str, str]],
    *,
    step: str,
    share: float = 1.0,
) -> list[tuple[str, str | None]]:
    """Per passage, (the generated instruction, why it is unusable or None), in passage order."""
    checker = InstructionChecker(job)
    problems: dict[int, str | None] = {}

    def check(index: int, text: str) -> str | None:
        problems[index] = checker.problem(normalize_instruction(text), passages[index].answer)
        return problems[index]

    results = run.generate(prompt, items, step=step, check=check, share=share)
    return [
        (normalize_instruction(result.text or ""), result.dropped if result.text is None else problems[index])
        for index, result in enumerate(results)
    ]


def drop_key(kind: str, reason: str, what: str = "generator_") -> str:
    """``kind:generator_<reason>`` for an unusable generator output, ``kind:budget_spent`` for none
    (spent budget is not the generator's fault)."""
    return f"{kind}:{reason}" if reason == BUDGET_SPENT else f"{kind}:{what}{reason}"


def is_rebuilt(reason: str) -> bool:
    """Whether a drop reason (without its kind) means the row was rebuilt from the templates."""
    return reason == BUDGET_SPENT or reason.startswith(("generator_", "self_instruct_"))


def generated_instructions(
    passages: Sequence[Passage],
    run: GenerationRun,
    job: DatasetJob,
    drops: Counter[str],
    *,
    golden_documents: set[str] = frozenset(),
) -> dict[str, str]:
    """``{chunk id: instruction}`` for the passages whose generated instruction passes the checks.

    Every other passage is counted in ``drops`` by the reason (``instruction:generator_<reason>``,
    or ``instruction:budget_spent`` when the time budget ran out first; ``golden:`` for a chunk of
    a held-out document) and left to the templates.
    """
    if not passages or not run.available:
        return {}
    items = [
        {"title": passage.title, "text": truncate_words(passage.chunk.content, job.prompt_max_words)}
        for passage in passages
    ]
    checked = _generate_checked(
        passages,
        run,
        job,
        load_prompt(INSTRUCTION_PROMPT),
        items,
        step="instructions",
        share=job.instruction_share,
    )
    accepted = {}
    for passage, (instruction, reason) in zip(passages, checked, strict=True):
        if reason is None:
            accepted[passage.chunk.id] = instruction
        else:
            kind = "golden" if passage.chunk.document_id in golden_documents else "instruction"
            drops[drop_key(kind, reason)] += 1
    return accepted


def passage_examples(passages: Iterable[Passage], generated: dict[str, str]) -> list[InstructionExample]:
    """The passage view of every chunk: the generator's instruction where accepted, else a template."""
    examples = []
    for passage in passages:
        chunk = passage.chunk
        instruction = generated.get(chunk.id)
        source = GENERATOR if instruction else TEMPLATE
        if instruction is None:
            instruction = passage_instruction(passage.answer, passage.title, chunk.id, passage.document)
        examples.append(
            InstructionExample(instruction, passage.answer, chunk.document_id, chunk.id, PASSAGE, source)
        )
    return examples


def template_views(passages: Sequence[Passage], job: DatasetJob) -> list[InstructionExample]:
    """The template-only views: paragraphs, continuations and whole documents (``job.views``)."""
    examples: list[InstructionExample] = []
    seen_answers: set[str] = set()

    def add(instruction: str, answer: str, passage: Passage, origin: str) -> None:
        # Overlapping chunks can repeat a paragraph: each answer once.
        if len(words(answer)) >= job.min_answer_words and answer not in seen_answers:
            seen_answers.add(answer)
            chunk = passage.chunk
            examples.append(InstructionExample(instruction, answer, chunk.document_id, chunk.id, origin))

    for passage in passages:
        if "paragraph" in job.views:
            parts = paragraphs(passage.answer)
            for number, part in enumerate(parts if len(parts) > 1 else []):
                key = f"{passage.chunk.id}:{number}"
                instruction = paragraph_instruction(part, passage.title, key, passage.document)
                add(instruction, part, passage, "paragraph")
        if "continuation" in job.views:
            found = continuation(passage.answer)
            if found:
                add(found[0], found[1], passage, "continuation")
    if "document" in job.views:
        firsts: dict[str, Passage] = {}
        for passage in passages:
            firsts.setdefault(passage.chunk.document_id, passage)
        for document_id, passage in firsts.items():
            if passage.title and passage.document:
                answer = trim_answer(passage.document, job.max_answer_chars)
                add(document_instruction(passage.title, document_id), answer, passage, "document")
    return examples


def self_instruct_examples(
    passages: Sequence[Passage], run: GenerationRun, job: DatasetJob, drops: Counter[str]
) -> list[InstructionExample]:
    """A second request per passage in the style of a seed task (``job.self_instruct``).

    The generator writes it; where it fails (or none runs), the seed style is filled with the
    passage's key phrase instead, as the passage view falls back to its templates.
    """
    if not job.self_instruct or not passages:
        return []
    seeds = load_seed_tasks().tasks
    # Each chunk gets one seed style, chosen by its id so the choice is reproducible.
    styles = [seeds[int(content_hash(p.chunk.id)[:8], 16) % len(seeds)] for p in passages]
    checked: list[tuple[str, str | None]] = [("", "no_generator")] * len(passages)
    if run.available:
        items = [
            {"example": style.example, "text": truncate_words(p.chunk.content, job.prompt_max_words)}
            for p, style in zip(passages, styles, strict=True)
        ]
        prompt = load_prompt(SELF_INSTRUCT_PROMPT)
        checked = _generate_checked(passages, run, job, prompt, items, step="self-instruct requests")
    examples = []
    for passage, style, (generated, reason) in zip(passages, styles, checked, strict=True):
        instruction, source = generated, GENERATOR
        if reason is not None:
            if reason != "no_generator":
                drops[drop_key("instruction", reason, "self_instruct_")] += 1
            phrases = key_phrases(passage.answer, 1)
            instruction, source = style.render(phrases[0] if phrases else passage.title), TEMPLATE
        chunk = passage.chunk
        examples.append(
            InstructionExample(
                instruction, passage.answer, chunk.document_id, chunk.id, SELF_INSTRUCT, source
            )
        )
    return examples


def filter_instructions(
    candidates: Sequence[InstructionExample], job: DatasetJob, drops: Counter[str]
) -> list[InstructionExample]:
    """Keep the candidates whose instruction is a usable, new request (``InstructionChecker``)."""
    checker = InstructionChecker(job)
    kept = []
    for example in candidates:
        reason = checker.problem(example.instruction, example.answer)
        if reason:
            drops[f"instruction:{reason}"] += 1
            continue
        kept.append(example)
    return kept
