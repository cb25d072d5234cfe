"""The request validator, the templates, cleaning a chunk into an answer, and the generator's time
budget with its progress events (a fake clock: no test waits or reads wall-clock time)."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from twinops.datasets.budget import BUDGET_SPENT, GenerationRun
from twinops.datasets.generators import Generated, Generator
from twinops.datasets.jobs import DatasetJob
from twinops.datasets.prompts import INSTRUCTION_PROMPT, load_prompt
from twinops.datasets.requests import request_problem
from twinops.datasets.templates import (
    continuation,
    document_instruction,
    generic_answer,
    paragraph_instruction,
    passage_instruction,
)
from twinops.datasets.text import clean_passage, key_phrases, paragraphs
from twinops.domain.progress import parse_duration, progress_lines
from twinops.errors import ConfigError

PASSAGE = (
    "Golden sets protect evaluation from wishful thinking. I keep a golden set of two hundred "
    "questions per product, written by people who use it, and I never train on them."
)


def problem(text: str, passage: str = PASSAGE) -> str | None:
    return request_problem(text, passage, min_words=3, max_words=60)


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        # Issue 26's first golden "question", and its kind.
        ("I'm glad you're happy with the golden set. It's a great way to keep your work clean.", "chatter"),
        ("You're right, I'll make sure to provide a more accurate answer.", "not_a_request"),
        ("Thank you for sharing the golden set with me.", "chatter"),
        ("What has been a success:", "not_a_request"),
        ("The golden set is a list of questions.", "not_a_request"),
        ("Summarize the passage above in two sentences.", "boilerplate"),
        ("I'm sorry, as an AI language model I cannot do that.", "refusal"),
        ("Hi", "instruction_length"),
        (
            "Explain: golden sets protect evaluation from wishful thinking, I keep a golden set.",
            "copies_passage",
        ),
        ("What's the story behind the story?", "off_topic"),
        # SmolLM2's, in issue 26's demo run: only generic words in common with any passage.
        ("What's the most important thing to keep in mind when you're trying?", "off_topic"),
    ],
)
def test_what_a_person_would_not_ask_is_named(text: str, reason: str) -> None:
    assert problem(text) == reason


@pytest.mark.parametrize(
    "text",
    [
        "Why do you never train on your golden set?",
        "How many questions should a golden set hold?",
        "Explain how you write golden questions for a product.",
        "Please describe who writes the questions of your golden sets.",
        "Should I train on the golden questions?",
    ],
)
def test_questions_and_requests_pass(text: str) -> None:
    assert problem(text) is None


def test_every_template_asks_a_question_or_makes_a_request(corpus_kit) -> None:
    """Over the demo corpus: every view's template instruction passes the same validator."""
    checked = 0
    for title, chunks in corpus_kit.demo_documents().items():
        document = "\n\n".join(chunks)
        for number, chunk in enumerate(chunks):
            answer = clean_passage(chunk)
            key = f"{title}:{number}"
            asks = [(passage_instruction(answer, title, key, document), answer)]
            asks += [
                (paragraph_instruction(p, title, key, document), p)
                for p in paragraphs(answer)
                if len(p.split()) >= DatasetJob().min_answer_words  # shorter ones make no row
            ]
            found = continuation(answer)
            if found:
                asks.append(found)
            for instruction, text in asks:
                assert problem(instruction, text) is None, instruction
                checked += 1
        assert problem(document_instruction(title, title), document) is None
    assert checked > 100


def test_templates_rotate_deterministically_and_answers_are_generic() -> None:
    first = passage_instruction(PASSAGE, "Golden Sets Before Vibes", "chunk-1")
    assert first == passage_instruction(PASSAGE, "Golden Sets Before Vibes", "chunk-1")
    many = {passage_instruction(PASSAGE, "Golden Sets Before Vibes", f"chunk-{n}") for n in range(40)}
    assert len(many) >= 4, "the templates rotate across chunks"
    answer = generic_answer(PASSAGE, "", "chunk-1")
    assert key_phrases(PASSAGE, 1)[0].lower() in answer.lower() and " I " not in answer


def test_a_chunk_cut_mid_sentence_is_cleaned_at_both_edges() -> None:
    chunk = (
        "exact dataset versions it saw and the run that\nproduced it. A registered model is not a "
        "deployed model. It is just a model we can find again.\n\nAliases do the deploying. The serving "
        "layer never asks for a version number. The short version: register everythi"
    )
    cleaned = clean_passage(chunk)
    assert cleaned.startswith("A registered model") and cleaned.endswith("never asks for a version number.")
    whole = "Aliases do the deploying. They move in seconds."
    assert clean_passage(whole) == whole
    instruction, rest = continuation(cleaned) or ("", "")
    assert instruction.startswith("Continue") and "A registered model is not a deployed model." in instruction
    assert rest.startswith("It is just a model")


class SlowGenerator(Generator):
    """Each batch costs ``seconds`` on the fake clock; every other item is chatter."""

    name = "slow"

    def __init__(self, clock: list[float], seconds: float) -> None:
        self.clock = clock
        self.seconds = seconds
        self.batches = 0

    @property
    def version(self) -> str:
        return "1"

    def generate(self, prompt, items: Sequence[dict[str, str]], *, on_progress=None) -> list[Generated]:
        self.clock[0] += self.seconds
        self.batches += 1
        return [
            Generated.ok("Why do golden sets matter?" if n % 2 == 0 else "I'm glad you asked.")
            for n, _ in enumerate(items)
        ]


def test_the_budget_stops_generation_and_progress_says_rate_and_time_left() -> None:
    clock = [100.0]
    events: list[tuple[str, int, int | None, str]] = []
    generator = SlowGenerator(clock, seconds=10.0)
    run = GenerationRun(
        generator,
        budget_seconds=25.0,
        batch_size=2,
        on_progress=lambda *event: events.append(event),
        clock=lambda: clock[0],
    )
    items = [{"title": "", "text": PASSAGE}] * 10
    results = run.generate(
        load_prompt(INSTRUCTION_PROMPT), items, step="instructions", check=lambda _, text: problem(text)
    )
    # Batches start at 0 s, 10 s and 20 s of the budget; at 30 s it is spent: 6 made, 4 left over.
    assert generator.batches == 3 and len(results) == 10
    assert [r.dropped for r in results[6:]] == [BUDGET_SPENT] * 4
    assert run.seconds_spent == 30.0 and not run.available
    first, *_, last = events
    # After the first batch: 2 of 10 in 10 s is 0.20/s; the rate says 40 s left, the budget 15 s.
    assert first == ("instructions", 2, 10, "1 made, 1 dropped, 0.20 rows/s, 15.0s left")
    assert last[1] == last[2] == 10
    assert "4 left to the templates (budget spent)" in last[3]
    # Once spent, later calls generate nothing and say so for every item.
    again = run.generate(load_prompt(INSTRUCTION_PROMPT), items[:3], step="answers", check=lambda *_: None)
    assert generator.batches == 3 and {r.dropped for r in again} == {BUDGET_SPENT}


def test_a_share_of_the_budget_leaves_the_rest_for_later_calls() -> None:
    clock = [0.0]
    generator = SlowGenerator(clock, seconds=10.0)
    run = GenerationRun(generator, budget_seconds=40.0, batch_size=1, clock=lambda: clock[0])
    items = [{"title": "", "text": PASSAGE}] * 10
    prompt = load_prompt(INSTRUCTION_PROMPT)
    first = run.generate(prompt, items, step="instructions", check=lambda *_: None, share=0.5)
    assert sum(r.text is not None for r in first) == 2  # 20 of the 40 s
    second = run.generate(prompt, items, step="answers", check=lambda *_: None)
    assert sum(r.text is not None for r in second) == 2  # the other 20 s


def test_no_budget_means_no_generation_at_all() -> None:
    clock = [0.0]
    generator = SlowGenerator(clock, seconds=1.0)
    run = GenerationRun(generator, budget_seconds=0, batch_size=4, clock=lambda: clock[0])
    assert not run.available
    results = run.generate(
        load_prompt(INSTRUCTION_PROMPT), [{"title": "", "text": PASSAGE}], step="s", check=lambda *_: None
    )
    assert generator.batches == 0 and results[0].dropped == BUDGET_SPENT


def test_progress_lines_are_throttled_but_keep_first_and_last() -> None:
    clock = [0.0]
    lines: list[str] = []
    on_progress = progress_lines(lines.append, every_seconds=5.0, clock=lambda: clock[0])
    for done in range(1, 11):
        on_progress("instructions", done, 10, f"{done} made")
        clock[0] += 2.0
    assert lines == [
        "instructions: 1/10 (1 made)",
        "instructions: 4/10 (4 made)",
        "instructions: 7/10 (7 made)",
        "instructions: 10/10 (10 made)",
    ]


def test_budget_takes_durations_and_rejects_nonsense_in_one_line() -> None:
    assert parse_duration("10m") == 600.0 and parse_duration("1h30m") == 5400.0 and parse_duration("90") == 90
    assert DatasetJob(budget="2m").budget == 120.0 and DatasetJob(budget=None).budget is None
    assert "budget" not in DatasetJob().identity(), "the rows' hash says what the budget changed"
    with pytest.raises(ValueError, match="not a duration"):
        DatasetJob(budget="ten minutes")
    with pytest.raises(ConfigError, match=r"invalid --budget: .*not a duration"):
        from twinops.cli.datasets import build

        build(budget="soon", job_file=None)
