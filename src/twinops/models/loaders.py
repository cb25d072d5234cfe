"""The one place that loads the configured models (embedder, causal LM) offline."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from twinops.models.hf import load_tokenizer
from twinops.models.resolve import embedder_path
from twinops.settings import Settings

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer


@lru_cache(maxsize=4)
def sentence_transformer(path: str) -> SentenceTransformer:
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(path, device="cpu")


def load_embedder(settings: Settings) -> SentenceTransformer:
    """The configured sentence-transformers embedder, cached per process."""
    return sentence_transformer(embedder_path(settings))


def embedder_identity(settings: Settings) -> tuple[str, str]:
    """(model id, version) stamped on every vector: the configured name and a hash of its weights."""
    from twinops.domain.hashing import content_hash

    path = Path(embedder_path(settings))
    weights = sorted(path.glob("*.safetensors")) + sorted(path.glob("*.bin"))
    fingerprint = (
        content_hash(*[(w.name, w.stat().st_size) for w in weights], (path / "config.json").read_text())
        if path.exists()
        else settings.embedding_model
    )
    return settings.embedding_model, fingerprint[:12]


def load_causal_lm(reference: str, *, dtype: str = "float32"):
    """A causal LM and its tokenizer from a resolved folder or HF id (``llm_path`` resolves).

    Folders converted from GGUF by older pulls keep a stale ``quantization_config`` (quant_method
    gguf) beside plain float safetensors; transformers then refuses to train them, so the tag is
    dropped here (GGUF files themselves are read with ``gguf_file``, not through this path).
    """
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.from_pretrained(reference)
    quantization = getattr(config, "quantization_config", None)
    method = quantization.get("quant_method") if isinstance(quantization, dict) else None
    if method is None and quantization is not None:
        method = getattr(quantization, "quant_method", None)
    if str(method).lower().endswith("gguf"):
        delattr(config, "quantization_config")
    _flush_denormals()
    tokenizer = load_tokenizer(reference)
    model = AutoModelForCausalLM.from_pretrained(reference, config=config, dtype=getattr(torch, dtype))
    return model, tokenizer


def _flush_denormals() -> None:
    import torch

    # Activations and gradients of these small models underflow into subnormal floats; on CPU
    # every op touching them takes a slow path (training ran ~10x slower). Process-wide.
    torch.set_flush_denormal(True)


@dataclass(frozen=True)
class GenerationModel:
    """A causal LM ready to generate, and how it runs.

    ``backend``: ``float`` (a plain model) or ``gptq-kernels`` (int4 weights on gptqmodel's kernels).
    A GPTQ folder is never served or scored from its float copy: what is named GPTQ runs as GPTQ.
    """

    model: Any
    tokenizer: Any
    backend: Literal["float", "gptq-kernels"]


def load_generation_model(reference: str) -> GenerationModel:
    """Load a resolved folder or HF id for serving or scoring, in eval mode.

    A GPTQ folder runs on the GPTQ kernels, or the load fails with one ``ConfigError`` line saying
    why (kernels missing or refusing the folder, or the folder broken) and how to fix it. Its
    dequantized float copy would compute a different model (float32 instead of the kernels' bf16,
    more memory), so it is not a substitute. Anything else goes through ``load_causal_lm``.
    """
    from twinops.models import gptq

    if not gptq.is_gptq_folder(reference):
        model, tokenizer = load_causal_lm(reference)
        model.eval()
        return GenerationModel(model=model, tokenizer=tokenizer, backend="float")
    _flush_denormals()
    model, tokenizer = gptq.load_gptq_with_kernels(Path(reference))
    return GenerationModel(model=model, tokenizer=tokenizer, backend="gptq-kernels")
