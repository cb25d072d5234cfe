"""A GPTQ folder (real gptqmodel output) served and scored in the core env: on its kernels, or not at all."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest
from tests.support.quantize_env import quantize_env_or_skip

from twinops.errors import ConfigError
from twinops.models.gptq import GPTQ_TENSORS, kernels_unavailable_reason, load_gptq_as_float
from twinops.models.loaders import load_generation_model
from twinops.quantize.job import QuantizeJob
from twinops.quantize.runner import run_in_quantize_env
from twinops.settings import Settings

pytestmark = pytest.mark.slow

TEXTS = [
    f"Post {i}: shipping an LLM twin means versioning every dataset, tracking each run in MLflow and "
    f"gating promotion on metrics that matter, not on vibes; lesson number {i} is about lineage."
    for i in range(12)
]
QUANTIZED = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


@pytest.fixture(scope="module")
def gptq_folder(tiny_llama: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny Llama quantized by gptqmodel (group size 32), the way `twinops quantize` writes it."""
    root = tmp_path_factory.mktemp("gptq")
    settings = Settings(home=root / "home")
    job = QuantizeJob(
        model_path=tiny_llama,
        output_dir=root / "tiny-gptq",
        group_size=32,
        calibration_texts=TEXTS,
        calibration_samples=8,
        held_out_samples=3,
        max_seq_len=64,
    )
    quantize_env_or_skip(settings)
    run_in_quantize_env(job, settings)  # with the environment present, a failure here is a failure
    return job.output_dir


def _prompt_ids(tokenizer):
    messages = [{"role": "user", "content": "Why version every dataset of an LLM twin?"}]
    return tokenizer.apply_chat_template(
        messages, add_generation_prompt=True, return_tensors="pt", return_dict=True
    )["input_ids"]


def test_gptq_folder_runs_on_int4_kernels(gptq_folder: Path) -> None:
    # The kernels are part of the core env's install (requirements-gptq-kernels.txt): no skip.
    assert kernels_unavailable_reason() is None
    import torch
    from gptqmodel.nn_modules.qlinear import BaseQuantLinear

    loaded = load_generation_model(str(gptq_folder))
    assert loaded.backend == "gptq-kernels"
    assert loaded.tokenizer.pad_token is not None
    with torch.no_grad():
        loaded.model.generate(_prompt_ids(loaded.tokenizer), max_new_tokens=4, do_sample=False)

    modules = dict(loaded.model.named_modules())
    quantized = {name: module for name, module in modules.items() if name.endswith(QUANTIZED)}
    assert len(quantized) == 2 * len(QUANTIZED)  # two decoder layers
    for name, module in quantized.items():
        assert isinstance(module, BaseQuantLinear), f"{name} is {type(module).__name__}"
        assert not isinstance(module, torch.nn.Linear)
        weights = module.qweight
        assert not weights.is_floating_point(), "the weights stay packed integers, not a float copy"
        assert weights.numel() * weights.element_size() * 2 == module.in_features * module.out_features
        # gptqmodel's CPU kernel falls back to dequantizing per call when it cannot repack for
        # aten's int4 matmul; "inference" is the int4 path.
        assert getattr(module, "linear_mode", "inference") == "inference", name
    float_linears = [name for name, module in modules.items() if type(module) is torch.nn.Linear]
    assert float_linears == ["lm_head"]  # GPTQ leaves the output head as is


def test_kernels_generate_what_the_dequantized_copy_generates(gptq_folder: Path) -> None:
    """The kernels compute bf16 activations with bf16-rounded scales, the float copy exact float32
    weights: the next-token log-probs agree to bf16 rounding (measured max 0.004 nats on this model;
    allowed 0.05), and greedy tokens agree because this model's top-1/top-2 margins (>0.2 nats) are
    far wider than that. On SmolLM2-135M the margins are sometimes 0.03 nats, where greedy text
    legitimately parts after a few tokens, so the token check is made on the tiny model."""
    import torch

    kernels = load_generation_model(str(gptq_folder))
    exact_model, exact_tokenizer = load_gptq_as_float(gptq_folder)
    prompt = _prompt_ids(exact_tokenizer)
    with torch.no_grad():
        reference = exact_model.generate(prompt, max_new_tokens=8, do_sample=False)
        generated = kernels.model.generate(prompt, max_new_tokens=8, do_sample=False)
        exact_logprobs = torch.log_softmax(exact_model(reference).logits.float(), dim=-1)
        kernel_logprobs = torch.log_softmax(kernels.model(reference).logits.float(), dim=-1)
    assert generated[0, prompt.shape[1] :].tolist() == reference[0, prompt.shape[1] :].tolist()
    difference = (kernel_logprobs - exact_logprobs)[0, prompt.shape[1] - 1 :].abs().max().item()
    assert difference < 0.05


def test_without_gptqmodel_a_gptq_folder_is_refused_in_one_line(
    gptq_folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No float copy in the GPTQ model's name: the load fails, naming the folder and the fix."""
    # An environment without gptqmodel (None in sys.modules makes it unimportable, as if absent).
    monkeypatch.setitem(sys.modules, "gptqmodel", None)
    with pytest.raises(ConfigError) as error:
        load_generation_model(str(gptq_folder))
    message = str(error.value)
    assert "\n" not in message and str(gptq_folder) in message
    assert "gptqmodel" in message and "make .venv/.installed" in message


def test_kernels_that_refuse_the_folder_stop_the_server(
    gptq_folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The LLM server does not start on a GPTQ folder its kernels cannot load (no silent float copy)."""
    from transformers import AutoModelForCausalLM

    from twinops.serving.llm import TwinLLM

    def refuse(*args, **kwargs):
        raise RuntimeError("no kernel supports bits=4 group_size=32 on this CPU\nsecond line")

    monkeypatch.setattr(AutoModelForCausalLM, "from_pretrained", refuse)
    server = TwinLLM("twin-llm", str(gptq_folder))
    with pytest.raises(ConfigError) as error:
        server.load()
    message = str(error.value)
    assert "\n" not in message and str(gptq_folder) in message and "no kernel supports" in message
    assert not server.ready and server.engine is None


def test_evaluation_fails_when_kernels_and_float_copy_disagree(gptq_folder: Path) -> None:
    """Kernel perplexity 10% off the float copy's: the evaluation step fails saying so, in one line;
    the same values within 3% pass with one note."""
    import math

    from twinops.evaluation.evaluate import _gptq_agreement
    from twinops.evaluation.job import EvaluationJob
    from twinops.models.perplexity import log_perplexities

    model, tokenizer = load_gptq_as_float(gptq_folder)
    job = EvaluationJob.model_validate({"models": [{"name": "twin", "path": str(gptq_folder)}]})
    float_values = log_perplexities(model, tokenizer, TEXTS[:4], max_length=job.max_length)
    note = _gptq_agreement(str(gptq_folder), TEXTS[:4], float_values, job)
    assert note.startswith("GPTQ kernels and the dequantized copy agree") and "0.00% apart" in note
    off = [value + math.log(1.10) for value in float_values]
    with pytest.raises(ConfigError) as error:
        _gptq_agreement(str(gptq_folder), TEXTS[:4], off, job)
    message = str(error.value)
    assert "\n" not in message and str(gptq_folder) in message
    assert "10.00% apart, tolerance 3%" in message and "twinops quantize" in message


def _without_tensor(gptq_folder: Path, target: Path, suffix: str) -> Path:
    from safetensors.torch import load_file, save_file

    shutil.copytree(gptq_folder, target)
    tensors = load_file(str(target / "model.safetensors"))
    dropped = next(name for name in tensors if name.endswith(suffix))
    del tensors[dropped]
    save_file(tensors, str(target / "model.safetensors"), metadata={"format": "pt"})
    return target


@pytest.mark.parametrize("damage", ["missing qzeros", "truncated weights", "config not json"])
def test_broken_gptq_folder_is_one_line(gptq_folder: Path, tmp_path: Path, damage: str) -> None:
    assert "qzeros" in GPTQ_TENSORS
    if damage == "missing qzeros":
        broken = _without_tensor(gptq_folder, tmp_path / "broken", ".qzeros")
    else:
        broken = shutil.copytree(gptq_folder, tmp_path / "broken")
        if damage == "truncated weights":
            weights = broken / "model.safetensors"
            weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
        else:
            text = (broken / "config.json").read_text()
            assert json.loads(text)["quantization_config"]["quant_method"] == "gptq"
            (broken / "config.json").write_text(text[: len(text) // 2])
    with pytest.raises(ConfigError) as error:
        load_generation_model(str(broken))
    message = str(error.value)
    assert "\n" not in message and str(broken) in message


def test_plain_folder_loads_as_float(tiny_llama: Path) -> None:
    loaded = load_generation_model(str(tiny_llama))
    assert loaded.backend == "float"
    assert not loaded.model.training
    assert loaded.tokenizer.pad_token is not None
