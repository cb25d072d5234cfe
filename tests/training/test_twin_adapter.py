"""A twin is an adapter on the shared base: the chain's stages composed into one LoRA that, applied to
the base, is the merged twin; the registry version points at it and at its base."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from twinops.domain.twins import twin_model_name
from twinops.domain.versions import DatasetKind
from twinops.errors import ConfigError
from twinops.training import DPOJob, SFTJob, TrainerSpec, train_dpo, train_sft
from twinops.training.adapters import SHARED_ADAPTER_DIR, CannotCompose, compose_adapters
from twinops.training.registry import register_result

# A large learning rate so the adapters move the model far from the base (a delta near zero would
# make any composition look right).
LOUD = TrainerSpec(
    max_steps=3, max_length=64, per_device_train_batch_size=2, device="cpu", learning_rate=5e-2
)


def _logits(model_dir: str, adapter_dir: str | None = None):
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(model_dir)
    if adapter_dir is not None:
        model = PeftModel.from_pretrained(model, adapter_dir)
    with torch.no_grad():
        return model.eval()(torch.tensor([[1, 5, 9, 200, 17, 3]])).logits


@pytest.mark.slow  # trains SFT then DPO on the tiny model
def test_the_dpo_twin_is_one_adapter_on_the_shared_base(training_settings, make_dataset, tiny_llama: Path):
    import torch

    make_dataset(DatasetKind.INSTRUCTION)
    make_dataset(DatasetKind.PREFERENCE)
    sft = train_sft(SFTJob(model=str(tiny_llama), trainer=LOUD, progress=False), training_settings)
    # SFT started from the base: its own adapter is the one on the base.
    assert sft.shared_base == str(tiny_llama) and sft.shared_adapter_dir == sft.adapter_dir

    dpo = train_dpo(DPOJob(trainer=LOUD, beta=0.2, progress=False), training_settings)
    assert dpo.base_model == sft.model_dir  # DPO trained on SFT's merge...
    assert dpo.shared_base == str(tiny_llama)  # ...and its twin adapter is on the base
    assert dpo.shared_adapter_dir == str(Path(dpo.run_dir) / SHARED_ADAPTER_DIR)
    config = json.loads((Path(dpo.shared_adapter_dir) / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == str(tiny_llama) and config["r"] == 16

    merged = _logits(dpo.model_dir)
    assert not torch.allclose(_logits(str(tiny_llama)), merged, atol=1e-3)  # the twin is not the base
    # DPO's own adapter on the base is not the twin (it is a delta on SFT's merge)...
    assert not torch.allclose(_logits(str(tiny_llama), dpo.adapter_dir), merged, atol=1e-3)
    # ...the composed one is.
    assert torch.allclose(_logits(str(tiny_llama), dpo.shared_adapter_dir), merged, atol=1e-4)

    version = register_result(dpo, training_settings, name=twin_model_name("Bo Lindqvist"))
    assert version.name == "twin-llm-bo-lindqvist"
    assert version.adapter_dir == dpo.shared_adapter_dir and version.base_model == str(tiny_llama)
    assert version.source_uri == dpo.model_dir


def test_a_chain_the_composition_cannot_carry_is_refused_with_its_reason(tmp_path: Path) -> None:
    import torch
    from safetensors.torch import save_file

    def adapter(name: str, **config) -> Path:
        folder = tmp_path / name
        folder.mkdir()
        keys = "base_model.model.model.layers.0.self_attn.q_proj"
        save_file(
            {f"{keys}.lora_A.weight": torch.ones(2, 4), f"{keys}.lora_B.weight": torch.ones(4, 2)},
            str(folder / "adapter_model.safetensors"),
        )
        base = {"peft_type": "LORA", "r": 2, "lora_alpha": 4, "target_modules": ["q_proj"]}
        (folder / "adapter_config.json").write_text(json.dumps({**base, **config}))
        return folder

    plain, dora = adapter("plain"), adapter("dora", use_dora=True)
    with pytest.raises(CannotCompose, match="use_dora"):
        compose_adapters([plain, dora], tmp_path / "out", base_model="base")
    with pytest.raises(CannotCompose, match=r"no adapter_config\.json"):
        compose_adapters([plain, tmp_path / "absent"], tmp_path / "out", base_model="base")
    assert not (tmp_path / "out").exists()

    # Two plain stages: rank adds up, each stage's scaling (alpha / r = 2) folds into its B.
    composed = compose_adapters([plain, adapter("second")], tmp_path / "out", base_model="base")
    from safetensors.torch import load_file

    weights = load_file(str(composed / "adapter_model.safetensors"))
    a, b = sorted(weights.items())
    assert a[1].shape == (4, 4) and b[1].shape == (4, 4)
    assert torch.equal(b[1] @ a[1], 2 * torch.ones(4, 2) @ torch.ones(2, 4) * 2)


def test_registering_an_adapter_on_another_base_is_refused(training_settings, tmp_path: Path) -> None:
    from twinops.training.adapters import SharedAdapter
    from twinops.training.registry import register_model

    model = tmp_path / "merged"
    model.mkdir()
    (model / "config.json").write_text("{}")
    folder = tmp_path / "adapter"
    folder.mkdir()
    (folder / "adapter_model.safetensors").write_bytes(b"")
    (folder / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": "/models/other"}))
    with pytest.raises(ConfigError, match="applies to /models/other, not to the base /models/base"):
        register_model(
            "twin-llm-bo",
            model,
            training_settings,
            base_model="/models/base",
            dataset_version_ids=["instruction-x"],
            adapter=SharedAdapter(base_model="/models/base", adapter_dir=str(folder)),
        )
