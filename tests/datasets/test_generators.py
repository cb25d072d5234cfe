"""Each generator backend: extractive (rules), openai (a real HTTP fake server), local (tiny + real LLM)."""

from __future__ import annotations

from pathlib import Path

import pytest

from twinops.datasets.generators.extractive import ExtractiveGenerator
from twinops.datasets.generators.local import LocalGenerator
from twinops.datasets.generators.openai import OpenAIGenerator
from twinops.datasets.prompts import (
    ANSWER_PROMPT,
    INSTRUCTION_PROMPT,
    SELF_INSTRUCT_PROMPT,
    load_prompt,
    load_seed_tasks,
)
from twinops.datasets.templates import passage_instruction
from twinops.datasets.text import key_phrases
from twinops.errors import ConfigError, ModelNotFound, ServiceUnavailable
from twinops.settings import Settings

PASSAGES = [
    {
        "title": "Tests",
        "text": "Mocks lie about the database. Real servers on localhost catch the real bugs.",
    },
    {"title": "Models", "text": "# Small models first\n\nA tiny model answers in milliseconds on a laptop."},
]


def test_extractive_is_deterministic_and_covers_every_prompt() -> None:
    """The rules backend writes what the dataset templates write (the builder counts it so)."""
    generator = ExtractiveGenerator()
    assert generator.templated
    first = generator.generate(load_prompt(INSTRUCTION_PROMPT), PASSAGES)
    assert first == generator.generate(load_prompt(INSTRUCTION_PROMPT), PASSAGES)
    text = PASSAGES[0]["text"]
    assert first[0].text == passage_instruction(text, "Tests", text)
    assert key_phrases(text, 1)[0] in first[0].text
    answer = generator.generate(load_prompt(ANSWER_PROMPT), [{"instruction": first[0].text}])[0]
    assert answer.text and "best practices" in answer.text
    seed = load_seed_tasks().tasks[3]
    seeded = generator.generate(load_prompt(SELF_INSTRUCT_PROMPT), [{"example": seed.example, "text": text}])[
        0
    ]
    assert seeded.text == seed.render(key_phrases(text, 1)[0])
    assert generator.ref == "generator:extractive@2"


def _openai(server, **options) -> OpenAIGenerator:
    return OpenAIGenerator(server.url, "fake-model", api_key="k", timeout=0.5, batch_size=4, **options)


def test_openai_valid_json_in_order(chat_server) -> None:
    generator = _openai(chat_server)
    results = generator.generate(load_prompt(INSTRUCTION_PROMPT), PASSAGES)
    assert [r.text for r in results] == [
        "Explain Mocks lie about the database. Real",
        "Explain # Small models first A tiny",
    ]
    assert all(r["model"] == "fake-model" for r in chat_server.requests)
    # Structured output: the schema of the prompt's one output field goes with every request.
    schema = chat_server.requests[0]["response_format"]["json_schema"]["schema"]
    assert schema["required"] == ["instruction"]
    assert generator.ref == "generator:openai@fake-model"
    generator.close()


def test_openai_reasks_after_invalid_json(chat_server) -> None:
    generator = _openai(chat_server)
    items = [{"title": "t", "text": "BADONCE the reply is broken the first time only."}]
    [result] = generator.generate(load_prompt(INSTRUCTION_PROMPT), items)
    assert result.text == "Explain BADONCE the reply is broken the"
    assert len(chat_server.requests) == 2
    reask = chat_server.requests[1]["messages"]
    assert reask[-2]["role"] == "assistant" and "not valid JSON" in reask[-1]["content"]


def test_openai_drops_items_that_never_validate_or_time_out(chat_server) -> None:
    generator = _openai(chat_server, max_reasks=1, max_retries=1)
    items = [
        {"title": "t", "text": "ALWAYSBAD never valid."},
        {"title": "t", "text": "SLOW this one takes longer than the timeout."},
        {"title": "t", "text": "A normal passage about databases and tests."},
    ]
    results = generator.generate(load_prompt(INSTRUCTION_PROMPT), items)
    assert [r.dropped for r in results] == ["invalid_json", "timeout", None]
    assert results[2].text.startswith("Explain A normal passage")


def test_openai_fails_loudly_on_config_problems(chat_server, settings: Settings) -> None:
    with pytest.raises(ConfigError, match="TWINOPS_GENERATOR_API_KEY"):
        _openai(chat_server).generate(load_prompt(INSTRUCTION_PROMPT), [{"title": "t", "text": "NOAUTH"}])
    with pytest.raises(ConfigError, match="TWINOPS_GENERATOR_URL"):
        OpenAIGenerator.from_settings(settings)
    unreachable = OpenAIGenerator("http://127.0.0.1:9/v1", "m", timeout=0.2, max_retries=1)
    with pytest.raises(ServiceUnavailable, match="TWINOPS_GENERATOR_URL"):
        unreachable.generate(load_prompt(ANSWER_PROMPT), [{"instruction": "hi"}])


def test_local_backend_on_tiny_llama(tiny_llama: Path, settings: Settings) -> None:
    generator = LocalGenerator(settings.model_copy(update={"base_model": str(tiny_llama)}), batch_size=2)
    seen: list[int] = []
    results = generator.generate(
        load_prompt(INSTRUCTION_PROMPT), [*PASSAGES, PASSAGES[0]], on_progress=seen.append
    )
    assert len(results) == 3 and sum(seen) == 3
    assert all((r.text is None) != (r.dropped is None) for r in results)
    # Greedy decoding: identical prompts give identical output, even across batches.
    assert results[0] == results[2]
    assert generator.ref.startswith("generator:local@")
    generator.close()


def test_local_backend_names_the_missing_model(settings: Settings) -> None:
    with pytest.raises(ModelNotFound, match="TWINOPS_BASE_MODEL"):
        LocalGenerator(settings.model_copy(update={"base_model": "bundled:nope"}))


@pytest.mark.slow
def test_local_backend_on_real_smollm2(bundled_models_dir: Path, settings: Settings) -> None:
    """The real 135M instruct model writes usable instructions and answers for a few chunks."""
    model = bundled_models_dir / "smollm2-135m-instruct"
    generator = LocalGenerator(settings.model_copy(update={"base_model": str(model)}), batch_size=3)
    passages = [
        *PASSAGES,
        {
            "title": "Data",
            "text": "I hash every dataset from its inputs, so a model can point back to its rows.",
        },
    ]
    instructions = generator.generate(load_prompt(INSTRUCTION_PROMPT), passages)
    assert sum(1 for r in instructions if r.text and len(r.text.split()) >= 3) >= 2
    answers = generator.generate(
        load_prompt(ANSWER_PROMPT), [{"instruction": r.text or "Explain testing."} for r in instructions]
    )
    assert all(a.text and len(a.text.split()) >= 5 for a in answers)
