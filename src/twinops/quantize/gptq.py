"""GPTQ quantization with gptqmodel. Runs in ``.venv-quantize`` (or the quantize image), never in
the core environment: gptqmodel needs protobuf>=7.34 while kfp pins protobuf<7.

``quantize(job)`` checks the group size first (one clear error before any work), measures the
source model's perplexity on held-out author texts, quantizes with calibration texts from the same
author, writes a standard GPTQ folder (``quantization_config`` in config.json: transformers with
optimum+gptqmodel and vLLM both load it), reloads it with transformers and measures again.
"""

from __future__ import annotations

import gc
import json
import shutil
import time
from importlib import metadata
from pathlib import Path

from twinops.errors import ConfigError
from twinops.models.gptq import prepare_gptqmodel_env
from twinops.quantize.calibration import read_texts, split_texts
from twinops.quantize.checks import check_group_size, linear_shapes
from twinops.quantize.job import QuantizeJob, QuantizeResult
from twinops.quantize.sizes import bf16_linear_bytes, quantized_linear_bytes, weights_bytes


def _texts(job: QuantizeJob) -> tuple[list[str], list[str]]:
    if job.calibration_texts:
        texts = list(job.calibration_texts)
    elif job.calibration_path is not None:
        texts = read_texts(job.calibration_path)
    else:
        raise ConfigError("no calibration texts: pass --calibration (a features folder or chunks.jsonl)")
    return split_texts(
        texts, calibration=job.calibration_samples, held_out=job.held_out_samples, seed=job.seed
    )


def _plain_source(model_path: Path, scratch: Path) -> Path:
    """``model_path``, or a view of it without a stale ``quantization_config``.

    A model converted from GGUF (the bundled SmolLM2, and SFT/DPO runs merged from it) keeps
    ``quant_method: gguf`` in config.json although its safetensors hold plain float weights;
    gptqmodel would take it for an already quantized checkpoint. The view links every file and
    rewrites only config.json.
    """
    config = json.loads((model_path / "config.json").read_text())
    quantization = config.get("quantization_config")
    if not quantization:
        return model_path
    if str(quantization.get("quant_method", "")).lower() == "gptq":
        raise ConfigError(f"{model_path} is already GPTQ-quantized: pass the merged float model instead")
    scratch.mkdir(parents=True, exist_ok=True)
    for item in model_path.iterdir():
        if item.name != "config.json":
            (scratch / item.name).symlink_to(item.resolve())
    del config["quantization_config"]
    (scratch / "config.json").write_text(json.dumps(config, indent=2))
    return scratch


def _device() -> str:
    import torch

    return "cuda:0" if torch.cuda.is_available() else "cpu"


def _source_perplexity(source: Path, held_out: list[str], max_length: int) -> float:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from twinops.models.perplexity import perplexity

    tokenizer = AutoTokenizer.from_pretrained(source)
    model = AutoModelForCausalLM.from_pretrained(source, dtype=torch.float32)
    try:
        return perplexity(model, tokenizer, held_out, max_length=max_length)
    finally:
        del model
        gc.collect()


def _quantized_perplexity(folder: Path, held_out: list[str], max_length: int) -> tuple[float, bool]:
    """Reload the output the way a user would (transformers) and measure it."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from twinops.models.perplexity import perplexity

    tokenizer = AutoTokenizer.from_pretrained(folder)
    try:
        model = AutoModelForCausalLM.from_pretrained(folder, device_map=_device())
        via_transformers = True
    except ImportError:  # optimum missing: gptqmodel's own loader reads the same folder
        from gptqmodel import GPTQModel

        model = GPTQModel.load(str(folder), device=_device()).model
        via_transformers = False
    try:
        return perplexity(model, tokenizer, held_out, max_length=max_length), via_transformers
    finally:
        del model
        gc.collect()


def _calibration_rows(tokenizer, texts: list[str], max_length: int) -> list[dict[str, list[int]]]:
    rows = []
    for text in texts:
        ids = tokenizer(text, truncation=True, max_length=max_length)["input_ids"]
        if len(ids) >= 8:
            rows.append({"input_ids": ids, "attention_mask": [1] * len(ids)})
    if not rows:
        raise ConfigError("every calibration text is shorter than 8 tokens: use longer author texts")
    return rows


def quantize(job: QuantizeJob) -> QuantizeResult:
    """Quantize ``job.model_path`` into ``job.output_dir``; see the module docstring."""
    shapes = linear_shapes(job.model_path)
    check_group_size(job.model_path, job.group_size)
    calibration, held_out = _texts(job)
    prepare_gptqmodel_env()
    output_dir = job.output_dir.expanduser().resolve()
    source_view = output_dir.with_name(output_dir.name + ".source")
    shutil.rmtree(source_view, ignore_errors=True)
    try:
        source = _plain_source(job.model_path.expanduser().resolve(), source_view)
        return _quantize(
            job,
            source=source,
            shapes=shapes,
            calibration=calibration,
            held_out=held_out,
            output_dir=output_dir,
        )
    finally:
        shutil.rmtree(source_view, ignore_errors=True)


def _quantize(
    job: QuantizeJob,
    *,
    source: Path,
    shapes: dict[str, tuple[int, int]],
    calibration: list[str],
    held_out: list[str],
    output_dir: Path,
) -> QuantizeResult:
    perplexity_before = _source_perplexity(source, held_out, job.max_seq_len)

    from gptqmodel import GPTQModel, QuantizeConfig
    from transformers import AutoTokenizer

    staging = output_dir.with_name(output_dir.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    offload = output_dir.with_name(output_dir.name + ".offload")
    started = time.perf_counter()
    try:
        config = QuantizeConfig(
            bits=job.bits,
            group_size=job.group_size,
            desc_act=job.desc_act,
            sym=job.sym,
            damp_percent=job.damp_percent,
            offload_to_disk_path=str(offload),
        )
        tokenizer = AutoTokenizer.from_pretrained(source)
        model = GPTQModel.load(str(source), config, device=_device())
        model.quantize(_calibration_rows(tokenizer, calibration, job.max_seq_len), batch_size=1)
        model.save(str(staging))
        tokenizer.save_pretrained(staging)
        del model
        gc.collect()
        seconds = time.perf_counter() - started
        # The rename makes the output appear whole or not at all.
        shutil.rmtree(output_dir, ignore_errors=True)
        staging.rename(output_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        shutil.rmtree(offload, ignore_errors=True)

    perplexity_after, via_transformers = _quantized_perplexity(output_dir, held_out, job.max_seq_len)
    quantized_bytes, layers = quantized_linear_bytes(output_dir)
    bf16_bytes = bf16_linear_bytes(shapes, layers)
    result = QuantizeResult(
        model_path=str(job.model_path),
        output_dir=str(output_dir),
        bits=job.bits,
        group_size=job.group_size,
        calibration_samples=len(calibration),
        held_out_samples=len(held_out),
        size_before_bytes=weights_bytes(job.model_path),
        size_after_bytes=weights_bytes(output_dir),
        linear_bytes_bf16=bf16_bytes,
        linear_bytes_quantized=quantized_bytes,
        linear_size_ratio=quantized_bytes / bf16_bytes if bf16_bytes else float("nan"),
        perplexity_before=perplexity_before,
        perplexity_after=perplexity_after,
        perplexity_ratio=perplexity_after / perplexity_before,
        seconds=seconds,
        quantizer=f"gptqmodel=={metadata.version('gptqmodel')}",
        loaded_with_transformers=via_transformers,
    )
    # Kept beside the weights so the registry/evaluation can read what this folder cost and lost.
    (output_dir / "quantize_result.json").write_text(result.model_dump_json(indent=2))
    return result
