"""GPTQ folders in the core environment: detect one, run it on GPTQ kernels, or read it as float.

A GPTQ folder is what ``twinops quantize`` writes (gptqmodel, in ``.venv-quantize``): config.json
with ``quantization_config.quant_method == "gptq"`` and, per quantized linear layer, the standard
``format: gptq`` (v1) tensors ``qweight`` [in/pack, out], ``qzeros`` [groups, out/pack] stored minus
one, ``scales`` [groups, out] and ``g_idx`` [in].

- ``is_gptq_folder(path)``: the cheap check (config.json only).
- ``load_gptq_with_kernels(path)``: transformers' own GPTQ path (optimum + gptqmodel, installed in
  the core env without gptqmodel's protobuf>=7 pin, see the Makefile). The int4 weights stay packed
  and every quantized layer is a gptqmodel kernel module; on CPU that is ``TorchAtenLinear``
  (aten's int4pack matmul, bf16 activations). Raises when the kernels cannot load.
- ``load_gptq_as_float(path)``: every quantized layer unpacked into exactly the float weight the
  kernels multiply by (``scale * (q - zero)``), so it computes the GPTQ model in plain torch. Needs
  no gptqmodel; it is the evaluation's reader and the server's fallback.
Both return ``(model, tokenizer)`` in eval mode with the tokenizer's pad token set, and raise a
one-line ``ConfigError`` for a folder that does not match its config.
"""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path

from twinops.errors import ConfigError
from twinops.models.hf import error_line, load_tokenizer

# The tensors a GPTQ checkpoint stores per quantized linear layer, in place of ``weight``.
GPTQ_TENSORS = ("qweight", "qzeros", "scales", "g_idx")


def prepare_gptqmodel_env() -> None:
    """Environment gptqmodel reads at import; call before importing it (or transformers' GPTQ path)."""
    # gptqmodel sizes its CPU pool as (cores+1)//2 but always asks 2 loader workers from it, which
    # fails on a 2-core machine; 2 CPU workers is the smallest pool it accepts.
    os.environ.setdefault("GPTQMODEL_CPU_WORKERS", "2")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def _read_config(folder: Path) -> dict:
    try:
        return json.loads((folder / "config.json").read_text())
    except (OSError, ValueError) as error:
        raise ConfigError(
            f"cannot read {folder / 'config.json'} ({error_line(error)}): re-export the model"
        ) from error


def is_gptq_folder(model_path: str | Path) -> bool:
    folder = Path(model_path)
    if not (folder / "config.json").is_file():
        return False
    quantization = _read_config(folder).get("quantization_config") or {}
    return str(quantization.get("quant_method", "")).lower() == "gptq"


def _unpack(packed, bits: int, dim: int):
    """Split each int32 into 32/bits unsigned values along ``dim`` (low bits first)."""
    import torch

    per_int = 32 // bits
    shifts = torch.arange(0, 32, bits, dtype=torch.int32)
    mask = (1 << bits) - 1
    if dim == 0:  # [rows, cols] -> [rows * per_int, cols]
        values = (packed.unsqueeze(1) >> shifts.view(1, -1, 1)) & mask
        return values.reshape(packed.shape[0] * per_int, packed.shape[1])
    values = (packed.unsqueeze(2) >> shifts.view(1, 1, -1)) & mask  # -> [rows, cols * per_int]
    return values.reshape(packed.shape[0], packed.shape[1] * per_int)


def dequantize_linear(qweight, qzeros, scales, g_idx, bits: int):
    """The float weight [out, in] that a GPTQ linear layer multiplies by."""
    import torch

    q = _unpack(qweight, bits, dim=0).to(torch.float32)  # [in, out]
    zeros = (_unpack(qzeros, bits, dim=1) + 1).to(torch.float32)  # v1 stores zero - 1
    groups = g_idx.long()
    weight = scales.to(torch.float32)[groups] * (q - zeros[groups, : q.shape[1]])
    return weight.t().contiguous()


def _read_tensors(folder: Path) -> dict:
    from safetensors.torch import load_file

    tensors: dict = {}
    for file in sorted(folder.glob("*.safetensors")):
        try:
            tensors.update(load_file(str(file)))
        except Exception as error:  # safetensors raises its own SafetensorError for damaged files
            raise ConfigError(
                f"cannot read {file} ({error_line(error)}): re-run `twinops quantize`"
            ) from error
    if not tensors:
        raise ConfigError(f"{folder} has no *.safetensors weights: re-run `twinops quantize`")
    return tensors


def load_gptq_as_float(path: str | Path, *, dtype: str = "float32"):
    """(model, tokenizer) for a GPTQ folder, with every quantized layer dequantized."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    folder = Path(path)
    quantization = _read_config(folder).get("quantization_config") or {}
    bits = int(quantization.get("bits", 4))
    fmt = quantization.get("checkpoint_format") or quantization.get("format") or "gptq"
    if 32 % bits or fmt != "gptq":
        raise ConfigError(
            f"{folder} is GPTQ {bits}-bit format {fmt!r}: only 2/4/8-bit format 'gptq' can be read "
            "without gptqmodel; evaluate it in .venv-quantize"
        )
    config = AutoConfig.from_pretrained(folder)
    config.quantization_config = None
    del config.quantization_config
    model = AutoModelForCausalLM.from_config(config, dtype=getattr(torch, dtype))

    tensors = _read_tensors(folder)
    state = {name: tensor for name, tensor in tensors.items() if not name.endswith(GPTQ_TENSORS)}
    for name in [name for name in tensors if name.endswith(".qweight")]:
        prefix = name.removesuffix(".qweight")
        parts = [f"{prefix}.{kind}" for kind in GPTQ_TENSORS]
        absent = [part for part in parts if part not in tensors]
        if absent:
            raise ConfigError(f"{folder} lacks the GPTQ tensor {absent[0]}: re-run `twinops quantize`")
        state[f"{prefix}.weight"] = dequantize_linear(*(tensors[part] for part in parts), bits)
    missing, unexpected = model.load_state_dict(
        {name: tensor.to(getattr(torch, dtype)) for name, tensor in state.items()}, strict=False
    )
    missing = [name for name in missing if not (name == "lm_head.weight" and config.tie_word_embeddings)]
    if missing or unexpected:
        raise ConfigError(
            f"{folder} does not match its config ({len(missing)} missing, {len(unexpected)} unexpected "
            f"tensors, e.g. {(missing or unexpected)[0]}): re-run `twinops quantize`"
        )
    if config.tie_word_embeddings:
        model.tie_weights()
    model.eval()
    return model, load_tokenizer(folder)


def kernels_unavailable_reason() -> str | None:
    """Why this environment cannot run GPTQ kernels at all (a missing package), else None."""
    for package, purpose in (("gptqmodel", "GPTQ kernels"), ("optimum", "transformers' GPTQ path")):
        if importlib.util.find_spec(package) is None:
            return (
                f"{package} ({purpose}) is not installed in this environment; "
                "`make .venv/.installed` installs it"
            )
    return None


def _import_gptqmodel_quietly() -> None:
    """Import gptqmodel, undoing the ``logging.basicConfig(level=INFO)`` its tokenicer dependency runs
    at import: left in place, it would print every library's INFO records in the server."""
    import logging

    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    import gptqmodel  # noqa: F401 - imported for its side effects, before transformers does

    for handler in [handler for handler in root.handlers if handler not in handlers]:
        root.removeHandler(handler)
    root.setLevel(level)


def load_gptq_with_kernels(path: str | Path):
    """(model, tokenizer) for a GPTQ folder on gptqmodel's kernels, on CPU, warmed up.

    The weights stay int4; the model computes in bfloat16 (the dtype the CPU kernel runs in).
    Whatever stops the kernels (a missing package, a folder they refuse) is one ``ConfigError`` line
    naming the folder: there is no float fallback (``load_gptq_as_float`` is a check, not a server).
    """
    folder = Path(path)
    reason = kernels_unavailable_reason()
    if reason:
        raise ConfigError(f"cannot run the GPTQ model {folder} on its kernels: {reason}")
    prepare_gptqmodel_env()
    try:
        _import_gptqmodel_quietly()
    except Exception as error:  # an install that imports badly is as unusable as a missing one
        raise ConfigError(
            f"cannot run the GPTQ model {folder}: gptqmodel fails to import ({error_line(error)}); "
            "`make .venv/.installed` reinstalls it"
        ) from error
    import torch
    from transformers import AutoModelForCausalLM

    try:
        model, info = AutoModelForCausalLM.from_pretrained(
            folder, device_map="cpu", dtype=torch.bfloat16, output_loading_info=True
        )
    except Exception as error:  # transformers/safetensors/gptqmodel each raise their own types
        raise ConfigError(
            f"the GPTQ kernels cannot load {folder} ({error_line(error)}): re-run `twinops quantize`"
        ) from error
    tied = bool(getattr(model.config, "tie_word_embeddings", False))
    missing = [name for name in info.get("missing_keys", ()) if not (name == "lm_head.weight" and tied)]
    if missing or info.get("mismatched_keys"):
        # transformers would serve randomly initialised layers here; refuse instead.
        example = (missing or list(info["mismatched_keys"]))[0]
        raise ConfigError(f"{folder} does not match its config (e.g. {example}): re-run `twinops quantize`")
    model.eval()
    tokenizer = load_tokenizer(folder)
    # The first forward repacks the weights for the CPU int4 matmul (outside autograd, so the
    # kernel takes its inference path); doing it here keeps that cost off the first request.
    with torch.no_grad():
        model(torch.tensor([[tokenizer.pad_token_id or 0] * 2]))
    return model, tokenizer
