"""Read a GPTQ folder as a plain float model, in the core environment (no gptqmodel there).

GPTQ kernels compute ``x @ (scale * (q - zero))``; unpacking the int4 weights into exactly those
float weights gives the model the quantized one computes, so the evaluation can score the GPTQ
twin side by side with the others. Supports the standard ``format: gptq`` (v1) checkpoint:
``qweight`` [in/pack, out], ``qzeros`` [groups, out/pack] stored minus one, ``scales`` [groups, out],
``g_idx`` [in].
"""

from __future__ import annotations

import json
from pathlib import Path

from twinops.errors import ConfigError


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


def load_gptq_as_float(path: str | Path, *, dtype: str = "float32"):
    """(model, tokenizer) for a GPTQ folder, with every quantized layer dequantized."""
    import torch
    from safetensors.torch import load_file
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    folder = Path(path)
    raw = json.loads((folder / "config.json").read_text())
    quantization = raw.get("quantization_config") or {}
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

    tensors: dict = {}
    for file in sorted(folder.glob("*.safetensors")):
        tensors.update(load_file(str(file)))
    state = {
        name: tensor
        for name, tensor in tensors.items()
        if not name.endswith((".qweight", ".qzeros", ".scales", ".g_idx"))
    }
    for name in [name for name in tensors if name.endswith(".qweight")]:
        prefix = name.removesuffix(".qweight")
        state[f"{prefix}.weight"] = dequantize_linear(
            tensors[name],
            tensors[f"{prefix}.qzeros"],
            tensors[f"{prefix}.scales"],
            tensors[f"{prefix}.g_idx"],
            bits,
        )
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
    tokenizer = AutoTokenizer.from_pretrained(folder)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return model, tokenizer
