"""A tiny random Llama with the SmolLM2 tokenizer: same code paths as the real model, in seconds."""

from __future__ import annotations

from pathlib import Path


def build_tiny_llama(tokenizer_source: str | Path, target: Path, *, seed: int = 0) -> Path:
    """Save a 2-layer, 64-wide random ``LlamaForCausalLM`` with ``tokenizer_source``'s tokenizer."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    if (target / "config.json").exists():
        return target
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_source)
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=1024,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=True,
    )
    model = LlamaForCausalLM(config)
    target.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(target)
    tokenizer.save_pretrained(target)
    return target


def build_random_lora(
    base_dir: str | Path,
    target: Path,
    *,
    seed: int,
    rank: int = 4,
    target_modules: tuple[str, ...] = (),
    gain: float = 1.0,
) -> Path:
    """Save a LoRA adapter on ``base_dir`` with random (non-zero) weights, as a trained one is saved.

    A fresh LoRA's B is zero, so it would answer exactly as the base; random A and B make each
    seed's adapter answer differently, which is what serving many adapters needs to show.
    ``target_modules``: default q_proj, v_proj and down_proj. ``gain``: how far each factor moves
    its layer's output, relative to the output's own size (1: a different model; 0.05: a nudge).
    """
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    if (target / "adapter_config.json").exists():
        return target
    model = AutoModelForCausalLM.from_pretrained(str(base_dir), dtype=torch.float32)
    config = LoraConfig(
        r=rank,
        lora_alpha=2 * rank,
        target_modules=list(target_modules or ("q_proj", "v_proj", "down_proj")),
        init_lora_weights=False,
    )
    peft_model = get_peft_model(model, config)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, parameter in peft_model.named_parameters():
            if "lora_" in name:
                scale = gain / parameter.shape[1] ** 0.5  # ~gain x the input's size per factor
                parameter.copy_(torch.randn(parameter.shape, generator=generator) * scale)
    peft_model.save_pretrained(target)
    return target
