"""What a GPTQ run is asked to do and what it reports: pydantic models, no torch import.

The job is built in the core environment (CLI, KFP component) and handed as JSON to the
``.venv-quantize`` interpreter, so it only carries plain paths and numbers.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

# The one stdout line ``python -m twinops.quantize`` ends with, which the runner reads back.
RESULT_PREFIX = "TWINOPS_RESULT "
ERROR_PREFIX = "TWINOPS_ERROR "


class QuantizeJob(BaseModel):
    """A GPTQ quantization of one merged causal LM (a normal HF folder).

    The defaults were chosen on the demo twin (SmolLM2-135M after DAPT, SFT and DPO), by the
    held-out golden perplexity of the folder on the GPTQ kernels as the server runs them, over the
    float model's (57.0): group size 64 1.095, 32 1.068, with damping 0.01 1.057, asymmetric 1.051,
    calibrating on 34 of the 38 training passages instead of 29: 1.046.

    The embeddings and lm_head stay in float (gptqmodel quantizes only the blocks' linears). Keeping
    the first and last blocks in float too (gptqmodel's dynamic skip rules) was measured on the demo
    twin and dropped: the same held-out perplexity as quantizing them (60.9 either way, group size 32,
    float source 57.0), and the folder did not load on gptqmodel 7.6's CPU kernel.
    """

    model_config = ConfigDict(extra="forbid")

    model_path: Path = Field(description="Merged HF model folder to quantize (config.json + safetensors).")
    output_dir: Path = Field(description="Where the GPTQ model is written (replaced whole on success).")
    bits: Literal[2, 3, 4, 8] = Field(4, description="Weight bits.")
    group_size: int = Field(
        32,
        description="Columns sharing one scale/zero; must divide every linear in-feature (-1 = per column). "
        "32: on the demo twin (SmolLM2-135M) the served kernels' held-out perplexity ratio to the float "
        "model fell from 1.095 (64) to 1.068, for 7% more bytes in the quantized layers.",
    )
    desc_act: bool = Field(
        False,
        description="Act-order. Off: gptqmodel 7.6's CPU kernel (TorchAtenLinear, what the LLM server "
        "runs) cannot load an act-order checkpoint, and vLLM's fast path wants it off too.",
    )
    sym: bool = Field(
        False,
        description="Symmetric quantization. Off: a zero point per group fits the small twin's skewed "
        "weights (demo, group size 32, damping 0.01: ratio 1.057 symmetric, 1.051 asymmetric); the "
        "CPU kernel serves both, vLLM serves asymmetric GPTQ without its Marlin kernels.",
    )
    damp_percent: float = Field(
        0.01,
        gt=0,
        lt=1,
        description="Dampening added to the Hessian's diagonal (a fraction of its mean). 0.01, not "
        "gptqmodel's 0.05: the demo twin's ratio fell from 1.068 to 1.057 (group size 32, symmetric).",
    )
    calibration_path: Path | None = Field(
        None,
        description="chunks.jsonl (features artifact), a features folder, a dataset folder with "
        "train.jsonl (its train split only), or a .txt/.jsonl of texts.",
    )
    calibration_texts: list[str] = Field(default_factory=list, description="Texts used instead of a path.")
    calibration_samples: int = Field(64, ge=1, description="Calibration texts drawn from the corpus.")
    held_out_samples: int = Field(
        4,
        ge=1,
        description="Author texts kept aside for this step's own before/after perplexity (at most a "
        "quarter of them). Few: every text kept aside is one GPTQ does not calibrate on, and on the demo "
        "34 calibration texts instead of 29 took the twin from 1.051 to 1.046 of its float source on the "
        "golden set, which the evaluation measures anyway.",
    )
    max_seq_len: int = Field(256, ge=16, description="Tokens per calibration / perplexity text.")
    seed: int = 0


class QuantizeResult(BaseModel):
    """Sizes and perplexities before/after, and where the quantized model is."""

    model_path: str
    output_dir: str
    bits: int
    group_size: int
    calibration_samples: int
    held_out_samples: int
    size_before_bytes: int = Field(description="Weights of the source folder on disk.")
    size_after_bytes: int = Field(description="Weights of the GPTQ folder on disk.")
    linear_bytes_bf16: int = Field(description="The quantized linear layers as bf16 would weigh.")
    linear_bytes_quantized: int = Field(description="qweight + qzeros + scales + g_idx of those layers.")
    linear_size_ratio: float = Field(description="linear_bytes_quantized / linear_bytes_bf16.")
    perplexity_before: float
    perplexity_after: float
    perplexity_ratio: float
    seconds: float = Field(description="Wall time of the GPTQ pass (load, calibrate, pack, save).")
    quantizer: str = Field(description="Quantizer package and version.")
    loaded_with_transformers: bool = Field(
        description="The output was reloaded with AutoModelForCausalLM for the 'after' perplexity."
    )


# The defaults the CLI, the pipeline step and ``python -m twinops.quantize`` share.
DEFAULT_GROUP_SIZE: int = QuantizeJob.model_fields["group_size"].default
DEFAULT_HELD_OUT: int = QuantizeJob.model_fields["held_out_samples"].default
