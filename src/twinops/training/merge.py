"""Merge a saved LoRA adapter into its base model and save a plain HF folder (contract 5).

The SFT and DPO runs merge in memory right after training; this is the same step from disk,
for adapters trained elsewhere (e.g. on a GPU cluster) or re-merging onto a full-precision base.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from pydantic import BaseModel

from twinops.errors import ConfigError, NotFound
from twinops.models.resolve import resolve_model
from twinops.settings import Settings
from twinops.training.runs import load_trainable_lm


class MergeResult(BaseModel):
    adapter_dir: str
    base_model: str
    output_dir: str
    parameters: int


def adapter_base(adapter_dir: Path) -> str | None:
    """The base model the adapter was trained on, as ``adapter_config.json`` records it."""
    config = adapter_dir / "adapter_config.json"
    if not config.exists():
        raise NotFound(
            f"{adapter_dir} has no adapter_config.json: pass a folder saved by a LoRA run (adapter/)"
        )
    return json.loads(config.read_text()).get("base_model_name_or_path")


def merge_adapter(
    adapter_dir: str | Path, output_dir: str | Path, settings: Settings, *, base_model: str | None = None
) -> MergeResult:
    """Load ``base_model`` (default: the one the adapter names), apply the adapter, merge, save.

    An adapter whose shapes or layer names do not fit the base raises one ``ConfigError`` and
    leaves nothing at ``output_dir``.
    """
    from peft import PeftModel

    adapter_dir = Path(adapter_dir).expanduser().resolve()
    recorded = adapter_base(adapter_dir)
    reference = base_model or recorded
    if not reference:
        raise ConfigError(f"adapter {adapter_dir} does not name its base model: pass --base MODEL")
    base = resolve_model(reference, settings, setting="--base")
    model, tokenizer = load_trainable_lm(base)
    try:
        # A wrong base shows up as a size mismatch (RuntimeError) or missing target layers (ValueError).
        merged = PeftModel.from_pretrained(model, str(adapter_dir)).merge_and_unload()
    except (RuntimeError, ValueError, KeyError) as error:
        raise ConfigError(
            f"adapter {adapter_dir} does not match base model {base} ({_reason(error)}): merge it onto "
            f"the base it was trained from ({recorded or 'see adapter_config.json'})"
        ) from error
    output = Path(output_dir).expanduser().resolve()
    staging = output.with_name(output.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    merged.save_pretrained(staging)
    tokenizer.save_pretrained(staging)
    if output.exists():
        shutil.rmtree(output)
    staging.rename(output)
    return MergeResult(
        adapter_dir=str(adapter_dir),
        base_model=base,
        output_dir=str(output),
        parameters=sum(p.numel() for p in merged.parameters()),
    )


def _reason(error: Exception) -> str:
    """The telling line of a peft/torch load error (the size mismatch, not the preamble)."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    telling = [line for line in lines if "mismatch" in line or "not found" in line.lower()]
    return ((telling or lines or [type(error).__name__])[0])[:200]
