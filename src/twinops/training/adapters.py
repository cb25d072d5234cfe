"""The twin's adapter on the shared base model: the LoRA stages of a chain, composed into one.

Every LoRA stage merges its adapter and the next stage starts from that merged model with a fresh
adapter (DAPT → SFT → DPO, see ``training.dapt``). Each stage's ``adapter/`` is therefore against
the model it started from, not against the base every twin shares. Many twins on one base need
the whole chain as one adapter on that base, and it exists exactly: merging adds ``s·B·A`` to a
weight, so the final merged model is ``W_base + Σ s_i·B_i·A_i`` over the stages, which is one LoRA
of rank ``Σ r_i`` whose ``A`` stacks the stages' ``A_i`` and whose ``B`` puts the scaled ``s_i·B_i``
side by side, with scaling 1 (``lora_alpha == r``). A module one stage did not target gets zeros
there. Training dynamics are untouched (each stage still trains a fresh adapter on its merged
start, as before); the composed adapter is written beside ``adapter/`` as ``adapter-on-base/``.

``shared_adapter`` decides per run: a start model that is not a twinops run's ``merged/`` is the
base itself (the stage's adapter is already on it); one that is takes the previous run's adapter
on the base and adds this stage's. When that is impossible (the previous run kept none, or an
adapter uses what the composition cannot carry: DoRA, bias, per-module rank or alpha patterns,
modules saved whole), the run records why and registers without an adapter.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from pydantic import BaseModel, Field

ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
SHARED_ADAPTER_DIR = "adapter-on-base"
_LORA_A, _LORA_B = ".lora_A.weight", ".lora_B.weight"


class CannotCompose(Exception):
    """Why a chain of adapters has no single adapter on the base (the message is the reason)."""


class SharedAdapter(BaseModel):
    """What a run's model is as an adapter on the shared base, or why it has none."""

    base_model: str | None = Field(None, description="The base model the adapter applies to.")
    adapter_dir: str | None = Field(None, description="The adapter on ``base_model``; None: see ``missing``.")
    missing: str | None = Field(None, description="Why there is no adapter on the base.")


def _read(adapter_dir: Path) -> tuple[dict, dict]:
    from safetensors.torch import load_file

    config_file, weights_file = adapter_dir / ADAPTER_CONFIG, adapter_dir / ADAPTER_WEIGHTS
    if not config_file.exists() or not weights_file.exists():
        raise CannotCompose(f"{adapter_dir} has no {ADAPTER_CONFIG} and {ADAPTER_WEIGHTS}")
    config = json.loads(config_file.read_text(encoding="utf-8"))
    if config.get("peft_type") != "LORA":
        raise CannotCompose(f"{adapter_dir} is a {config.get('peft_type')} adapter, not LoRA")
    for key in ("use_dora", "modules_to_save", "rank_pattern", "alpha_pattern", "layers_to_transform"):
        if config.get(key):
            raise CannotCompose(f"{adapter_dir} sets {key}, which one stacked LoRA cannot carry")
    if config.get("bias", "none") != "none" or config.get("lora_bias"):
        raise CannotCompose(f"{adapter_dir} trains biases, which one stacked LoRA cannot carry")
    weights = load_file(str(weights_file))
    strays = [key for key in weights if not key.endswith((_LORA_A, _LORA_B))]
    if strays:
        raise CannotCompose(f"{adapter_dir} holds weights beyond LoRA's A and B (e.g. {strays[0]})")
    return config, weights


def _scaling(config: dict) -> float:
    rank, alpha = int(config["r"]), float(config["lora_alpha"])
    return alpha / math.sqrt(rank) if config.get("use_rslora") else alpha / rank


def _target_names(config: dict, adapter_dir: Path) -> set[str]:
    targets = config.get("target_modules")
    if isinstance(targets, str):
        raise CannotCompose(f"{adapter_dir} targets modules by pattern {targets!r}, not by name")
    return set(targets or ())


def compose_adapters(adapters: list[Path], target: Path, *, base_model: str) -> Path:
    """Write to ``target`` the one LoRA on ``base_model`` that equals applying ``adapters`` in turn
    (each trained on the merge of the ones before it); ``CannotCompose`` says why not."""
    import torch
    from safetensors.torch import save_file

    read = [(Path(folder), *_read(Path(folder))) for folder in adapters]
    modules = sorted(
        {key.removesuffix(_LORA_A) for _, _, weights in read for key in weights if key.endswith(_LORA_A)}
    )
    shapes: dict[str, tuple[int, int, torch.dtype]] = {}
    for folder, _config, weights in read:
        for module in modules:
            a, b = weights.get(module + _LORA_A), weights.get(module + _LORA_B)
            if (a is None) != (b is None):
                raise CannotCompose(f"{folder} has only one of LoRA's A and B for {module}")
            if a is not None:
                seen = shapes.setdefault(module, (a.shape[1], b.shape[0], a.dtype))
                if seen[:2] != (a.shape[1], b.shape[0]):
                    raise CannotCompose(f"{folder}'s {module} has another shape than the other stages'")
    stacked: dict[str, torch.Tensor] = {}
    for module in modules:
        fan_in, fan_out, dtype = shapes[module]
        parts_a, parts_b = [], []
        for _folder, config, weights in read:
            rank, scale = int(config["r"]), _scaling(config)
            a, b = weights.get(module + _LORA_A), weights.get(module + _LORA_B)
            parts_a.append(a.float() if a is not None else torch.zeros(rank, fan_in))
            parts_b.append(b.float() * scale if b is not None else torch.zeros(fan_out, rank))
        stacked[module + _LORA_A] = torch.cat(parts_a, dim=0).to(dtype).contiguous()
        stacked[module + _LORA_B] = torch.cat(parts_b, dim=1).to(dtype).contiguous()
    rank = sum(int(config["r"]) for _, config, _ in read)
    config = dict(read[-1][1])
    config.update(
        r=rank,
        lora_alpha=rank,  # scaling 1: each stage's own scaling is folded into its B
        use_rslora=False,
        base_model_name_or_path=base_model,
        target_modules=sorted(set().union(*(_target_names(c, f) for f, c, _ in read))),
    )
    target.mkdir(parents=True, exist_ok=True)
    save_file(stacked, str(target / ADAPTER_WEIGHTS), metadata={"format": "pt"})
    (target / ADAPTER_CONFIG).write_text(json.dumps(config, indent=2, sort_keys=True), encoding="utf-8")
    return target


def shared_adapter(start_model: str, adapter_dir: Path, run_dir: Path, *, final_dir: Path) -> SharedAdapter:
    """This run's model as an adapter on the shared base (written under ``run_dir``, named by its
    path under ``final_dir``, where the run is published), or why there is none."""
    from twinops.training.runs import RESULT_FILE, TrainResult

    previous_file = Path(start_model).parent / RESULT_FILE
    if not previous_file.exists():
        # Started from a plain model: that model is the base and the stage's adapter is on it.
        return SharedAdapter(base_model=start_model, adapter_dir=str(final_dir / adapter_dir.name))
    previous = TrainResult.model_validate_json(previous_file.read_text(encoding="utf-8"))
    if not previous.shared_adapter_dir or not previous.shared_base:
        why = previous.shared_adapter_missing or "it kept no adapter on its base"
        return SharedAdapter(
            missing=f"started from run {previous.run_name}, which has no adapter on a base: {why}"
        )
    try:
        compose_adapters(
            [Path(previous.shared_adapter_dir), adapter_dir],
            run_dir / SHARED_ADAPTER_DIR,
            base_model=previous.shared_base,
        )
    except CannotCompose as reason:
        return SharedAdapter(missing=str(reason))
    return SharedAdapter(base_model=previous.shared_base, adapter_dir=str(final_dir / SHARED_ADAPTER_DIR))
