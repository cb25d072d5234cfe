"""The prompt registry, the instruction filters, the document split, decontamination and the canary."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from twinops.datasets.golden import CanaryLeak, Decontaminator, assert_no_canary, make_canary, split_documents
from twinops.datasets.instruction import InstructionExample, filter_instructions
from twinops.datasets.jobs import DatasetJob
from twinops.datasets.prompts import (
    ANSWER_PROMPT,
    INSTRUCTION_PROMPT,
    PromptTemplate,
    load_prompt,
    load_seed_tasks,
)
from twinops.datasets.text import similarity, trim_answer
from twinops.errors import ConfigError, TwinopsError


def test_prompts_are_versioned_files_with_stable_hashes() -> None:
    prompt = load_prompt(INSTRUCTION_PROMPT)
    assert prompt.version >= 1 and set(prompt.variables) == {"title", "text"}
    assert prompt.ref == f"prompt:{INSTRUCTION_PROMPT}@{prompt.content_hash}"
    edited = prompt.model_copy(update={"system": prompt.system + " Be brief."})
    assert edited.content_hash != prompt.content_hash
    messages = prompt.messages({"title": "T", "text": "Body."})
    assert messages[0]["role"] == "system" and messages[-1]["content"].endswith("Body.")
    # Worked examples become earlier turns; the JSON variant asks for JSON in every user turn.
    as_json = prompt.messages({"title": "T", "text": "Body."}, json_output=True)
    assert as_json[2]["content"].startswith('{"instruction"') and '"instruction"' in as_json[-1]["content"]
    with pytest.raises(ConfigError, match="needs variables"):
        load_prompt(ANSWER_PROMPT).messages({})


def test_a_template_must_declare_what_it_uses() -> None:
    with pytest.raises(ValueError, match="declares"):
        PromptTemplate(id="x", version=1, variables=("a",), output="o", user="{a} {b}")


def test_a_broken_prompt_or_seed_file_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text("id: x\nuser: [\n")
    with pytest.raises(ConfigError, match=r"prompt file .*a\.yaml is not readable YAML") as broken:
        load_prompt("x", tmp_path)
    (tmp_path / "a.yaml").write_text("id: x\nversion: 1\nvariables: [a]\noutput: o\nuser: '{a} {b}'\n")
    with pytest.raises(ConfigError, match=r"prompt file .*a\.yaml is invalid") as invalid:
        load_prompt("x", tmp_path)
    (tmp_path / "seed_tasks.yaml").write_text("id: seeds\nversion: 1\ntasks: []\n")
    with pytest.raises(ConfigError, match=r"seed task file .*seed_tasks\.yaml is invalid: `tasks`") as seeds:
        load_seed_tasks(tmp_path)
    for error in (broken, invalid, seeds):
        assert "\n" not in str(error.value)


# What the example instructions ask about, so none is dropped as off topic.
ANSWER = "Remote teams make decisions in writing, and tests run against a real database server. " * 2


def _example(instruction: str, doc: str = "d1") -> InstructionExample:
    return InstructionExample(instruction, ANSWER, doc, f"c-{instruction}", "passage")


def test_instruction_filters_drop_by_reason() -> None:
    drops: Counter[str] = Counter()
    kept = filter_instructions(
        [
            _example("Explain why tests should run against a real database server."),
            _example("Explain why tests should run against a real database server!"),
            _example("Hi"),
            _example("I'm sorry, as an AI language model I cannot do that."),
            _example("Summarize the passage above in two sentences."),
            _example("Write a short post about how remote teams make decisions."),
        ],
        DatasetJob(),
        drops,
    )
    assert [e.instruction[:12] for e in kept] == ["Explain why ", "Write a shor"]
    assert drops == Counter(
        {
            "instruction:near_duplicate": 1,
            "instruction:instruction_length": 1,
            "instruction:refusal": 1,
            "instruction:boilerplate": 1,
        }
    )


def test_answers_are_trimmed_lightly_at_a_sentence() -> None:
    text = "  First sentence here.\n\n\n\nSecond one is longer than the rest. Third.  "
    assert trim_answer(text, 500) == "First sentence here.\n\nSecond one is longer than the rest. Third."
    assert trim_answer(text, 62) == "First sentence here.\n\nSecond one is longer than the rest."
    assert similarity("a b c d", "a b c d") == 1.0 and similarity("a b", "x y") == 0.0


def test_split_is_by_document_and_stable_as_the_corpus_grows() -> None:
    documents = [f"doc-{i}" for i in range(40)]
    golden = split_documents(documents, 0.2)
    assert 0 < len(golden) < len(documents)
    # Adding documents never moves an existing one across the split.
    grown = split_documents([*documents, *(f"new-{i}" for i in range(20))], 0.2)
    assert grown & set(documents) == golden
    assert split_documents(documents, 0.2, seed=1) != golden
    assert len(split_documents(["a", "b"], 0.01)) == 1 and len(split_documents(["a", "b"], 0.99)) == 1
    with pytest.raises(TwinopsError, match="twinops etl"):
        split_documents(["only"], 0.2)


def test_decontamination_drops_rows_that_copy_golden_text() -> None:
    reference = "Style is mostly what you leave out. I cut adverbs, I cut hedges, and I keep sentences short."
    decontaminator = Decontaminator([reference], 8)
    drops: Counter[str] = Counter()
    rows = ["Tell me about style.\n" + reference, "Tell me about Kubernetes quotas and namespaces for teams."]
    assert decontaminator.filter(rows, str, 0.1, drops, "instruction") == [rows[1]]
    assert drops == Counter({"instruction:contaminated": 1})


def test_canary_check_trips_when_planted() -> None:
    canary = make_canary("golden rows hash")
    assert canary == make_canary("golden rows hash") and canary.startswith("TWINOPS-CANARY-")
    clean = {"instruction/train": [{"prompt": [{"role": "user", "content": "hi"}], "document_id": "d"}]}
    assert_no_canary(clean, [canary])
    planted = {
        "instruction/train": [{"completion": [{"role": "assistant", "content": f"text {canary} more"}]}]
    }
    with pytest.raises(CanaryLeak, match="instruction/train"):
        assert_no_canary(planted, [canary, ""])


def test_job_loads_from_yaml_and_rejects_typos(tmp_path: Path) -> None:
    good = tmp_path / "job.yaml"
    good.write_text("generator: extractive\nauthor: Ada Example\nholdout_fraction: 0.3\n")
    assert DatasetJob.from_yaml(good).holdout_fraction == 0.3
    bad = tmp_path / "bad.yaml"
    bad.write_text("generatr: extractive\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml is invalid"):
        DatasetJob.from_yaml(bad)


def test_self_instruct_adds_a_seed_styled_request_per_chunk(corpus_kit) -> None:
    from twinops.datasets.budget import GenerationRun
    from twinops.datasets.corpus import Corpus
    from twinops.datasets.instruction import self_instruct_examples, usable_passages
    from twinops.datasets.prompts import load_seed_tasks
    from twinops.domain import DatasetKind, DatasetVersion

    _, chunks = corpus_kit.make_chunks()
    corpus = Corpus(DatasetVersion(kind=DatasetKind.FEATURES, name="f", inputs_hash="h"), chunks)
    drops: Counter[str] = Counter()
    passages = usable_passages(corpus, DatasetJob(), drops)
    templates_only = GenerationRun(None, budget_seconds=0, batch_size=4)
    assert self_instruct_examples(passages, templates_only, DatasetJob(), drops) == []
    seeded = self_instruct_examples(passages, templates_only, DatasetJob(self_instruct=True), drops)
    assert len(seeded) == len(passages) == len(chunks)
    styles = [task.style.split("{topic}")[0] for task in load_seed_tasks().tasks]
    assert all(any(e.instruction.startswith(s) for s in styles) for e in seeded)
    assert {e.source for e in seeded} == {"template"} and not drops
    # The answer is always the author's own text.
    assert {e.answer for e in seeded} <= {c.content for c in chunks}
