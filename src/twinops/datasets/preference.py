"""The preference dataset for DPO: chosen = the author's text, rejected = the base model's answer.

The rejected side is what the model writes without the author (a generic style), so DPO pushes
towards the author's voice. Pairs whose two sides are too alike teach nothing and are dropped.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from twinops.datasets.generators import Generator, ProgressCallback
from twinops.datasets.instruction import InstructionExample
from twinops.datasets.jobs import DatasetJob
from twinops.datasets.prompts import ANSWER_PROMPT, load_prompt
from twinops.datasets.text import similarity, words


@dataclass(frozen=True)
class PreferencePair:
    instruction: str
    chosen: str
    rejected: str
    document_id: str
    chunk_id: str

    def to_row(self) -> dict:
        """Contract 4: TRL conversational prompt/chosen/rejected plus the source document id."""
        return {
            "prompt": [{"role": "user", "content": self.instruction}],
            "chosen": [{"role": "assistant", "content": self.chosen}],
            "rejected": [{"role": "assistant", "content": self.rejected}],
            "document_id": self.document_id,
        }


def build_preference_pairs(
    examples: Sequence[InstructionExample],
    generator: Generator,
    job: DatasetJob,
    drops: Counter[str],
    *,
    on_progress: ProgressCallback | None = None,
) -> list[PreferencePair]:
    """One pair per example whose base-model answer exists and differs enough from the author's."""
    answers = generator.generate(
        load_prompt(ANSWER_PROMPT),
        [{"instruction": example.instruction} for example in examples],
        on_progress=on_progress,
    )
    pairs = []
    for example, answer in zip(examples, answers, strict=True):
        if answer.text is None:
            drops[f"preference:{answer.dropped}"] += 1
            continue
        rejected = answer.text.strip()
        if len(words(rejected)) < 3:
            drops["preference:rejected_too_short"] += 1
            continue
        if similarity(example.answer, rejected) > job.max_pair_similarity:
            drops["preference:too_similar"] += 1
            continue
        pairs.append(
            PreferencePair(
                example.instruction, example.answer, rejected, example.document_id, example.chunk_id
            )
        )
    return pairs
