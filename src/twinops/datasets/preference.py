"""The preference dataset for DPO: chosen = the author's text, rejected = the base model's answer.

The rejected side is what the model writes without the author (a generic style), so DPO pushes
towards the author's voice. Every instruction row gets a pair: the generator answers the
instruction (as many as its time budget allows, passage rows first); an answer that is missing,
too short, or too close to the author's text (it would teach nothing) is counted in ``drops`` as
``preference:generator_<reason>`` and replaced by ``templates.generic_answer``, a committal-free
assistant paragraph on the same topic. Each pair records where its rejected side came from
(``rejected_source``: generator or template), so no pair is silently empty or silently made up.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from twinops.datasets.budget import GenerationRun
from twinops.datasets.instruction import GENERATOR, PASSAGE, TEMPLATE, InstructionExample, drop_key
from twinops.datasets.jobs import DatasetJob
from twinops.datasets.prompts import ANSWER_PROMPT, load_prompt
from twinops.datasets.templates import generic_answer
from twinops.datasets.text import similarity, words

MIN_REJECTED_WORDS = 3


@dataclass(frozen=True)
class PreferencePair:
    instruction: str
    chosen: str
    rejected: str
    document_id: str
    chunk_id: str
    source: str = TEMPLATE  # of the instruction
    rejected_source: str = TEMPLATE

    def to_row(self) -> dict:
        """Contract 4: TRL conversational prompt/chosen/rejected, the document id and both sources."""
        return {
            "prompt": [{"role": "user", "content": self.instruction}],
            "chosen": [{"role": "assistant", "content": self.chosen}],
            "rejected": [{"role": "assistant", "content": self.rejected}],
            "document_id": self.document_id,
            "source": self.source,
            "rejected_source": self.rejected_source,
        }


def rejected_problem(answer: str | None, chosen: str, job: DatasetJob) -> str | None:
    """Why a generated answer cannot be the rejected side of a pair, or None."""
    if answer is None:
        return "empty_output"
    if len(words(answer)) < MIN_REJECTED_WORDS:
        return "rejected_too_short"
    if similarity(chosen, answer) > job.max_pair_similarity:
        return "too_similar"
    return None


def build_preference_pairs(
    examples: Sequence[InstructionExample], run: GenerationRun, job: DatasetJob, drops: Counter[str]
) -> list[PreferencePair]:
    """One pair per example, in example order; see the module docstring for the rejected side."""
    # Passage rows first: when the budget runs out, the rows most like the golden questions
    # have the base model's own answers.
    order = sorted(range(len(examples)), key=lambda index: examples[index].origin != PASSAGE)
    answers: dict[int, str] = {}
    if examples and run.available:
        results = run.generate(
            load_prompt(ANSWER_PROMPT),
            [{"instruction": examples[index].instruction} for index in order],
            step="rejected answers",
            check=lambda position, text: rejected_problem(
                text.strip(), examples[order[position]].answer, job
            ),
        )
        for index, result in zip(order, results, strict=True):
            text = result.text.strip() if result.text is not None else None
            reason = result.dropped if text is None else rejected_problem(text, examples[index].answer, job)
            if reason is None:
                answers[index] = text
            else:
                drops[drop_key("preference", reason)] += 1
    pairs = []
    for index, example in enumerate(examples):
        rejected = answers.get(index)
        source = GENERATOR if rejected is not None else TEMPLATE
        if rejected is None:
            rejected = generic_answer(example.answer, "", f"{example.chunk_id}:{example.instruction}")
        pairs.append(
            PreferencePair(
                example.instruction,
                example.answer,
                rejected,
                example.document_id,
                example.chunk_id,
                example.source,
                source,
            )
        )
    return pairs
