"""GPTQ: group-size checks, calibration texts, and a real gptqmodel run on a tiny Llama in .venv-quantize."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
from tests.support.quantize_env import quantize_env_or_skip

from twinops.cli import main
from twinops.errors import ConfigError, NotFound
from twinops.quantize.calibration import read_texts, split_texts
from twinops.quantize.checks import check_group_size
from twinops.quantize.job import QuantizeJob
from twinops.quantize.runner import run_in_quantize_env

AUTHOR = [
    f"Post {i}: shipping an LLM twin means versioning every dataset, tracking each run in MLflow and "
    f"gating promotion on metrics that matter, not on vibes; lesson number {i} is about lineage."
    for i in range(12)
]


def _chunks_file(folder: Path) -> Path:
    """A features artifact's chunks.jsonl (contract 2: one Chunk JSON per line, text in `content`)."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "chunks.jsonl"
    rows = [
        {"id": f"c{i}", "document_id": f"d{i}", "chunk_index": 0, "content": text}
        for i, text in enumerate(AUTHOR)
    ]
    path.write_text("\n".join(json.dumps(row) for row in rows) + "\n")
    return path


def _gguf_converted_copy(tiny_llama: Path, target: Path) -> Path:
    """The tiny model as the bundled SmolLM2 looks: float weights, but a stale gguf quantization_config."""
    shutil.copytree(tiny_llama, target)
    config = json.loads((target / "config.json").read_text())
    config["quantization_config"] = {"quant_method": "gguf", "dequantize": False}
    (target / "config.json").write_text(json.dumps(config))
    return target


def test_group_size_must_divide_every_width(tiny_llama: Path) -> None:
    assert check_group_size(tiny_llama, 32) == [64, 128]
    assert check_group_size(tiny_llama, -1) == [64, 128]
    with pytest.raises(ConfigError, match=r"group size 48 does not divide.*--group-size 64") as error:
        check_group_size(tiny_llama, 48)
    assert "\n" not in str(error.value)


def test_bad_group_size_fails_before_any_process(
    tiny_llama: Path, settings, tmp_path: Path, monkeypatch
) -> None:
    # A missing GPTQ interpreter would be the next error: the group size must be reported first.
    monkeypatch.setattr(settings, "quantize_python", tmp_path / "no-such-python")
    job = QuantizeJob(
        model_path=tiny_llama, output_dir=tmp_path / "out", group_size=100, calibration_texts=AUTHOR
    )
    with pytest.raises(ConfigError, match="group size 100"):
        run_in_quantize_env(job, settings)
    assert not (tmp_path / "out").exists()


def test_cli_bad_group_size_is_one_line(tiny_llama: Path, home: Path, tmp_path: Path, capsys) -> None:
    source = _chunks_file(tmp_path / "features")
    code = main(["quantize", "--model", str(tiny_llama), "--group-size", "40", "--calibration", str(source)])
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert "group size 40 does not divide" in err
    assert len(err.splitlines()) <= 3  # one line, maybe soft-wrapped by rich


def test_stale_gguf_config_is_hidden_from_gptqmodel(tiny_llama: Path, tmp_path: Path) -> None:
    from twinops.quantize.gptq import _plain_source

    assert _plain_source(tiny_llama, tmp_path / "unused") == tiny_llama
    view = _plain_source(_gguf_converted_copy(tiny_llama, tmp_path / "src"), tmp_path / "view")
    assert "quantization_config" not in json.loads((view / "config.json").read_text())
    assert (view / "model.safetensors").resolve() == (tmp_path / "src" / "model.safetensors").resolve()
    assert "quant_method" in (tmp_path / "src" / "config.json").read_text()  # the source is untouched


def test_calibration_texts_from_features_and_datasets(tmp_path: Path) -> None:
    chunks = _chunks_file(tmp_path / "features" / "v1")
    assert read_texts(chunks.parent) == AUTHOR
    dataset = tmp_path / "dataset"
    dataset.mkdir()
    rows = [
        {"prompt": [{"role": "user", "content": "q"}], "completion": [{"role": "assistant", "content": text}]}
        for text in AUTHOR[:3]
    ]
    (dataset / "train.jsonl").write_text("\n".join(json.dumps(row) for row in rows[:2]))
    # The test split holds the held-out documents the evaluation scores: never calibrated on.
    (dataset / "test.jsonl").write_text(json.dumps(rows[2]))
    assert read_texts(dataset) == AUTHOR[:2]
    calibration, held_out = split_texts(AUTHOR, calibration=100, held_out=3, seed=0)
    assert len(held_out) == 3 and not set(calibration) & set(held_out)
    assert len(calibration) + len(held_out) == len(AUTHOR)
    with pytest.raises(ConfigError, match="need at least 2"):
        split_texts(AUTHOR[:1], calibration=4, held_out=1, seed=0)
    with pytest.raises(NotFound):
        read_texts(tmp_path / "missing")


@pytest.mark.slow
def test_gptq_tiny_llama_in_quantize_env(tiny_llama: Path, settings, tmp_path: Path) -> None:
    """Real gptqmodel on CPU in .venv-quantize; the output reloads with transformers there and, dequantized,
    in the core environment with the same logits."""
    python = quantize_env_or_skip(settings)
    output = tmp_path / "gptq"
    job = QuantizeJob(
        model_path=_gguf_converted_copy(tiny_llama, tmp_path / "source"),
        output_dir=output,
        group_size=32,
        calibration_path=_chunks_file(tmp_path / "features"),
        calibration_samples=8,
        held_out_samples=3,
        max_seq_len=64,
    )
    result = run_in_quantize_env(job, settings)

    config = json.loads((output / "config.json").read_text())
    quantization = config["quantization_config"]
    assert quantization["quant_method"] == "gptq" and quantization["bits"] == 4
    assert quantization["group_size"] == 32 and quantization["format"] == "gptq"
    assert result.loaded_with_transformers
    assert result.calibration_samples == 8 and result.held_out_samples == 3
    assert 0 < result.linear_size_ratio < 0.5
    assert result.size_after_bytes < result.size_before_bytes
    assert result.perplexity_before > 0 and result.perplexity_after > 0
    assert json.loads((output / "quantize_result.json").read_text())["output_dir"] == str(output.resolve())
    assert not list(tmp_path.glob("gptq.*")) or list(tmp_path.glob("gptq.*")) == [
        tmp_path / "gptq.quantize.log"
    ]

    # Same logits from the GPTQ kernels (transformers in .venv-quantize) and the core env's dequantized copy.
    import torch

    from twinops.models.gptq import load_gptq_as_float

    probe = (
        "import json,os,sys,torch;os.environ.setdefault('GPTQMODEL_CPU_WORKERS','2');"
        "from transformers import AutoModelForCausalLM, AutoTokenizer;"
        f"p={str(output)!r};m=AutoModelForCausalLM.from_pretrained(p, device_map='cpu');"
        "t=AutoTokenizer.from_pretrained(p);ids=t('lineage beats vibes',return_tensors='pt').input_ids;"
        "print('LOGITS '+json.dumps(m(ids).logits[0,-1].float().tolist()))"
    )
    out = subprocess.run([str(python), "-c", probe], capture_output=True, text=True, check=True, timeout=300)
    kernel_logits = torch.tensor(json.loads(out.stdout.split("LOGITS ", 1)[1]))
    model, tokenizer = load_gptq_as_float(output)
    with torch.no_grad():
        float_logits = model(tokenizer("lineage beats vibes", return_tensors="pt").input_ids).logits[0, -1]
    # bf16 activations in the kernel path vs float32 here: equal up to bf16 rounding.
    assert torch.allclose(float_logits, kernel_logits, atol=0.05 * float(kernel_logits.abs().max()))
