"""Sizes from safetensors headers: whole folders and the linear layers GPTQ replaces."""

from __future__ import annotations

from math import prod
from pathlib import Path

from twinops.models.gptq import GPTQ_TENSORS

_DTYPE_BYTES = {
    "F64": 8,
    "F32": 4,
    "F16": 2,
    "BF16": 2,
    "I64": 8,
    "I32": 4,
    "I16": 2,
    "I8": 1,
    "U8": 1,
    "BOOL": 1,
}


def weights_bytes(folder: Path) -> int:
    """Bytes of the weight files (what a model costs on disk and to download)."""
    return sum(file.stat().st_size for file in folder.glob("*.safetensors"))


def tensor_bytes(folder: Path) -> dict[str, int]:
    """``{tensor name: bytes}`` for every tensor in the folder's safetensors files."""
    from safetensors import safe_open

    sizes: dict[str, int] = {}
    for file in sorted(folder.glob("*.safetensors")):
        with safe_open(str(file), framework="pt") as handle:
            for name in handle.keys():  # noqa: SIM118 - safe_open is not a mapping
                tensor = handle.get_slice(name)
                sizes[name] = prod(tensor.get_shape()) * _DTYPE_BYTES.get(tensor.get_dtype(), 4)
    return sizes


def quantized_linear_bytes(folder: Path) -> tuple[int, list[str]]:
    """(bytes of every GPTQ tensor, the layer prefixes that carry a ``qweight``)."""
    sizes = tensor_bytes(folder)
    layers = sorted(name.removesuffix(".qweight") for name in sizes if name.endswith(".qweight"))
    total = sum(size for name, size in sizes.items() if name.rsplit(".", 1)[-1] in GPTQ_TENSORS)
    return total, layers


def bf16_linear_bytes(shapes: dict[str, tuple[int, int]], layers: list[str]) -> int:
    """What ``layers`` weigh as bf16 (2 bytes per weight), from the source model's shapes."""
    return sum(
        out_f * in_f * 2 for name, (out_f, in_f) in shapes.items() if name.removesuffix(".weight") in layers
    )
