"""Checks that run before any GPTQ work: cheap, from the safetensors headers only."""

from __future__ import annotations

from pathlib import Path

from twinops.errors import ConfigError, ModelNotFound

# Weight names of the Llama-style linear layers GPTQ quantizes (the lm_head stays as is).
LINEAR_SUFFIXES = (
    "q_proj.weight",
    "k_proj.weight",
    "v_proj.weight",
    "o_proj.weight",
    "gate_proj.weight",
    "up_proj.weight",
    "down_proj.weight",
)


def weight_files(model_path: Path) -> list[Path]:
    files = sorted(model_path.glob("*.safetensors"))
    if not (model_path / "config.json").exists() or not files:
        raise ModelNotFound(
            f"{model_path} is not a merged HF model folder (config.json + *.safetensors): "
            "pass the `merged/` folder of an SFT/DPO run"
        )
    return files


def linear_shapes(model_path: Path) -> dict[str, tuple[int, int]]:
    """``{weight name: (out_features, in_features)}`` of every quantizable linear layer."""
    from safetensors import safe_open

    shapes: dict[str, tuple[int, int]] = {}
    for file in weight_files(model_path):
        with safe_open(str(file), framework="pt") as handle:
            for name in handle.keys():  # noqa: SIM118 - safe_open is not a mapping
                if name.endswith(LINEAR_SUFFIXES):
                    out_features, in_features = handle.get_slice(name).get_shape()
                    shapes[name] = (int(out_features), int(in_features))
    if not shapes:
        raise ModelNotFound(
            f"{model_path} has no *_proj linear layers GPTQ can quantize (not a Llama-style model)"
        )
    return shapes


def check_group_size(model_path: Path, group_size: int) -> list[int]:
    """Raise one clear line when ``group_size`` does not divide every in-feature; return the widths."""
    widths = sorted({in_features for _, in_features in linear_shapes(model_path).values()})
    if group_size == -1:
        return widths
    if group_size <= 0:
        raise ConfigError(
            f"GPTQ group size {group_size} is invalid: use a positive divisor of {widths} or -1"
        )
    bad = [width for width in widths if width % group_size]
    if bad:
        fitting = [size for size in (128, 64, 32, 16) if all(width % size == 0 for width in widths)]
        hint = f"use --group-size {fitting[0]}" if fitting else "use --group-size -1 (per column)"
        raise ConfigError(
            f"GPTQ group size {group_size} does not divide the linear widths {bad} of {model_path.name} "
            f"(all widths: {widths}): {hint}"
        )
    return widths
