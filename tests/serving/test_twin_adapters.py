"""Many twins on one base, in-process: the tiny random Llama with random LoRA adapters made here.

What a server of many twins must keep: each twin answers as its own adapter alone would, whichever
twins share its batch; a bad adapter is refused in one line and loads nothing; and when a twin's
champion moves in the registry (a real MLflow store), new requests answer as the new adapter, the
request already running finishes as the old one, and the other twins' answers do not change.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from tests.serving.conftest import greedy_alone, register_twin

from twinops.errors import NotFound
from twinops.infra.registry import client
from twinops.serving.adapters import BASE_ADAPTER, AdapterRefused, MixedAdapterModel
from twinops.serving.engine import GenerationEngine
from twinops.serving.protocol.types import SamplingParams
from twinops.serving.twins import TwinAdapters, twin_names

ADA, BO = "twin-llm-ada", "twin-llm-bo"
PROMPT = "Tell me about the sea and the"
ANSWER_TOKENS = 12


@pytest.fixture
def mixed(tiny_llama: Path) -> MixedAdapterModel:
    from twinops.models.loaders import load_generation_model

    loaded = load_generation_model(str(tiny_llama))
    return MixedAdapterModel(loaded.model, str(tiny_llama))


@pytest.fixture(scope="module")
def tokenizer(tiny_llama: Path):
    from twinops.models.hf import load_tokenizer

    return load_tokenizer(str(tiny_llama))


def _engine(mixed: MixedAdapterModel, tokenizer, name: str) -> GenerationEngine:
    return GenerationEngine(mixed.model, tokenizer, model_name=name, batch_window_ms=200, adapters=mixed)


def _ids(tokenizer) -> list[int]:
    return list(tokenizer(PROMPT, add_special_tokens=False)["input_ids"])


def _alone(tiny_llama: Path, adapter_dir: Path | None, tokens: int = ANSWER_TOKENS) -> str:
    return greedy_alone(tiny_llama, adapter_dir, PROMPT, tokens)


def _ask(engine: GenerationEngine, prompt: list[int], adapters: list[str | None]) -> list[str]:
    async def run() -> list[str]:
        try:
            answers = await asyncio.gather(
                *(
                    engine.generate(prompt, SamplingParams(max_tokens=ANSWER_TOKENS), adapter=a)
                    for a in adapters
                )
            )
            return [a.text for a in answers]
        finally:
            await engine.close()

    return asyncio.run(run())


# --- refusals ---------------------------------------------------------------------------------
def test_a_bad_adapter_is_refused_in_one_line_and_loads_nothing(
    mixed: MixedAdapterModel, twin_adapters_dir: Path, tmp_path: Path
) -> None:
    mixed.load("good", twin_adapters_dir / "seed1", label="good")
    wrong_rank = tmp_path / "wrong-rank"
    wrong_rank.mkdir()
    for file in (twin_adapters_dir / "rank8").iterdir():
        (wrong_rank / file.name).write_bytes(file.read_bytes())
    config = json.loads((wrong_rank / "adapter_config.json").read_text())
    (wrong_rank / "adapter_config.json").write_text(json.dumps({**config, "r": 4}))
    no_weights = tmp_path / "no-weights"
    no_weights.mkdir()
    (no_weights / "adapter_config.json").write_text(
        (twin_adapters_dir / "seed2" / "adapter_config.json").read_text()
    )

    cases = {
        "missing folder": (tmp_path / "nowhere", "does not exist"),
        "missing weights": (no_weights, "has no adapter_model.safetensors"),
        "wrong base": (twin_adapters_dir / "other-base-adapter", "was trained on"),
        "wrong rank": (wrong_rank, "rank 4"),
    }
    for case, (folder, says) in cases.items():
        with pytest.raises(AdapterRefused) as refused:
            mixed.load(case.replace(" ", "-"), folder, label=f"twin {case}")
        line = str(refused.value)
        assert "\n" not in line and says in line and f"twin {case}" in line, (case, line)
    assert list(mixed.adapters) == ["good"]
    assert mixed.adapter_bytes("wrong-rank") == 0 and mixed.adapter_bytes("good") > 0


# --- mixed batches ----------------------------------------------------------------------------
@pytest.mark.slow
def test_twins_in_one_batch_answer_as_their_adapters_alone(
    mixed: MixedAdapterModel, tokenizer, twin_adapters_dir: Path, tiny_llama: Path
) -> None:
    mixed.load("ada", twin_adapters_dir / "seed1", label="ada")
    mixed.load("bo", twin_adapters_dir / "seed2", label="bo")
    prompt = _ids(tokenizer)
    expected = {
        "ada": _alone(tiny_llama, twin_adapters_dir / "seed1"),
        "bo": _alone(tiny_llama, twin_adapters_dir / "seed2"),
        None: _alone(tiny_llama, None),
    }
    assert len(set(expected.values())) == 3  # the adapters make different twins

    order = ["ada", "bo", None, "bo", "ada"]
    together = _ask(_engine(mixed, tokenizer, "twins-mixed"), prompt, order)
    assert together == [expected[a] for a in order]
    alone = [
        _ask(_engine(mixed, tokenizer, f"twins-alone-{a}"), prompt, [a])[0]
        for a in ("ada", "bo", BASE_ADAPTER)
    ]
    assert alone == [expected["ada"], expected["bo"], expected[None]]


# --- following the registry -------------------------------------------------------------------
def test_twins_all_names_the_twins_with_a_champion(
    mlflow_settings, twin_adapters_dir: Path, tiny_llama: Path
) -> None:
    with pytest.raises(NotFound, match="no LLM twin"):
        twin_names("all", mlflow_settings)
    register_twin(mlflow_settings, BO, twin_adapters_dir / "seed2", tiny_llama)
    register_twin(mlflow_settings, ADA, twin_adapters_dir / "seed1", tiny_llama)
    register_twin(mlflow_settings, "twin-llm-cy", twin_adapters_dir / "seed3", tiny_llama, champion=False)
    client(mlflow_settings).create_registered_model("twin-reranker")
    assert twin_names("all", mlflow_settings) == [ADA, BO]
    assert twin_names("Ada, twin-llm-bo", mlflow_settings) == [ADA, BO]


@pytest.mark.slow
def test_a_moved_champion_serves_new_requests_and_leaves_the_other_twin_alone(
    mlflow_settings, mixed: MixedAdapterModel, tokenizer, twin_adapters_dir: Path, tiny_llama: Path
) -> None:
    register_twin(mlflow_settings, ADA, twin_adapters_dir / "seed1", tiny_llama)
    register_twin(mlflow_settings, BO, twin_adapters_dir / "seed2", tiny_llama)
    engine = _engine(mixed, tokenizer, "twins-follow")
    twins = TwinAdapters(mixed, mlflow_settings, [ADA, BO], in_use=engine.adapter_in_use, poll_seconds=0)
    twins.load_champions()
    prompt = _ids(tokenizer)
    long_params = SamplingParams(max_tokens=200)
    bo_v1_long = _alone(tiny_llama, twin_adapters_dir / "seed2", tokens=200)

    async def run() -> dict[str, object]:
        results: dict[str, object] = {}
        try:

            def ask(twin: str):
                params = SamplingParams(max_tokens=ANSWER_TOKENS)
                return engine.generate(prompt, params, adapter=twins.adapter_for(twin))

            results["before"] = await asyncio.gather(ask(ADA), ask(BO))
            # A long answer of bo's v1 is running when its champion moves to v2.
            running = engine.stream(prompt, long_params, adapter=twins.adapter_for(BO))
            first = await anext(running)
            results["in_use_at_switch"] = engine.adapter_in_use(twins.adapter_for(BO))
            register_twin(mlflow_settings, BO, twin_adapters_dir / "seed3", tiny_llama)
            results["events"] = twins.refresh()
            results["after"] = await asyncio.gather(ask(ADA), ask(BO))
            results["running"] = first.text + "".join([d.text async for d in running])
            # A bad adapter as v3: refused, v2 keeps answering.
            register_twin(
                mlflow_settings,
                BO,
                twin_adapters_dir / "other-base-adapter",
                twin_adapters_dir / "other-base",
            )
            results["refused"] = twins.refresh()
            results["after_refusal"] = await asyncio.gather(ask(ADA), ask(BO))
            await asyncio.sleep(1.2)
            twins.refresh()
            twins.refresh()  # past the grace: v1, no longer used, is freed
            return results
        finally:
            await engine.close()

    results = asyncio.run(run())
    expected_bo_v2 = _alone(tiny_llama, twin_adapters_dir / "seed3")
    ada_before, bo_before = results["before"]
    ada_after, bo_after = results["after"]
    assert results["in_use_at_switch"]
    assert results["running"] == bo_v1_long  # the request in flight finished on v1
    assert results["events"] and "v1 -> v2" in results["events"][0]
    assert bo_after.text == expected_bo_v2 != bo_before.text
    assert ada_after.text == ada_before.text  # byte for byte
    refused = results["refused"]
    assert len(refused) == 1 and "refused" in refused[0] and "was trained on" in refused[0]
    assert [a.text for a in results["after_refusal"]] == [ada_before.text, expected_bo_v2]
    assert twins.serving[BO].version == "2" and twins.refused[BO] == "3"
    assert sorted(mixed.adapters) == [f"{ADA}-v1", f"{BO}-v2"]


def test_a_pinned_twin_serves_its_version_and_does_not_follow_the_champion(
    mlflow_settings, mixed: MixedAdapterModel, twin_adapters_dir: Path, tiny_llama: Path
) -> None:
    """What a cluster's spec lists: ``models:/NAME/VERSION`` entries. A champion move changes
    nothing on a pinned twin (only a release, a new spec, does); an unpinned one follows."""
    from twinops.errors import ConfigError
    from twinops.serving.twins import twin_pins

    register_twin(mlflow_settings, ADA, twin_adapters_dir / "seed1", tiny_llama)
    register_twin(mlflow_settings, BO, twin_adapters_dir / "seed2", tiny_llama)
    spec = f"models:/{ADA}/1,{BO}"
    assert twin_names(spec, mlflow_settings) == [ADA, BO]
    assert twin_pins(spec) == {ADA: "1"}
    twins = TwinAdapters(mixed, mlflow_settings, [ADA, BO], poll_seconds=0, pinned=twin_pins(spec))
    twins.load_champions()
    assert twins.serving[ADA].label == f"{ADA} v1 [pinned]"
    register_twin(mlflow_settings, ADA, twin_adapters_dir / "seed3", tiny_llama)  # ada's champion: v2
    register_twin(mlflow_settings, BO, twin_adapters_dir / "seed3", tiny_llama)  # bo's champion: v2
    events = twins.refresh()
    assert len(events) == 1 and BO in events[0] and "v1 -> v2" in events[0]
    assert (twins.serving[ADA].version, twins.serving[BO].version) == ("1", "2")

    for bad, says in [
        (f"models:/{ADA}@champion", "pin a twin's version"),
        (f"models:/{ADA}/1,models:/{ADA}/2", "twice"),
        ("models:/twin-reranker/1", "pin a twin's version"),
    ]:
        with pytest.raises(ConfigError, match=says):
            twin_pins(bad)
    missing = TwinAdapters(mixed, mlflow_settings, [ADA], poll_seconds=0, pinned={ADA: "9"})
    with pytest.raises(NotFound, match="pins twin-llm-ada v9"):
        missing.load_champions()
