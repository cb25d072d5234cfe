"""GPTQ bench: twinops' quantize step vs. the raw gptqmodel calls doing the same work, same run.

Prints GPTQ wall time (twinops end to end, and raw gptqmodel load+quantize+save), the overhead
ratio, the size ratio of the linear layers (quantized / bf16, goal <= 0.35) and the held-out
perplexity ratio (after / before, goal <= 1.15); then, from the newest evaluation under
TWINOPS_HOME, how each model was scored (the GPTQ twin on its kernels) and in how many seconds.
Full run: the bundled SmolLM2-135M; ``--quick``:
a tiny random Llama (the ratios then only show the mechanics). Needs ``.venv-quantize``.

Author text: the newest features chunks.jsonl under TWINOPS_HOME, else data/demo-corpus, else README.

Time: two GPTQ passes of the 135M model (twinops, then raw gptqmodel): about 3 min each on 2 CPU
cores (more when the cores are shared), plus the perplexity passes; ``--quick`` takes about 1 min.
Measured here (shared cores): linear ratio 0.272, perplexity ratio 1.10 with 32 texts x 256 tokens
(16 x 128 gave 1.21: calibration size matters), overhead ratio ~1.0.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "src"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from twinops.quantize.calibration import latest_features_chunks, read_texts  # noqa: E402
from twinops.quantize.job import QuantizeJob  # noqa: E402
from twinops.quantize.runner import quantize_python, run_in_quantize_env  # noqa: E402
from twinops.settings import Settings  # noqa: E402

SIZE_GOAL = 0.35
PERPLEXITY_GOAL = 1.15

RAW_GPTQMODEL = """
import json, os, sys, time
os.environ.setdefault("GPTQMODEL_CPU_WORKERS", "2")
from gptqmodel import GPTQModel, QuantizeConfig
from transformers import AutoTokenizer
model_path, out, group, texts_file, max_len = sys.argv[1:6]
texts = json.load(open(texts_file))
tok = AutoTokenizer.from_pretrained(model_path)
encoded = [tok(t, truncation=True, max_length=int(max_len))["input_ids"] for t in texts]
rows = [{"input_ids": ids, "attention_mask": [1] * len(ids)} for ids in encoded if len(ids) >= 8]
start = time.perf_counter()
config = QuantizeConfig(bits=4, group_size=int(group), desc_act=False, sym=True)
model = GPTQModel.load(model_path, config, device="cpu")
model.quantize(rows, batch_size=1)
model.save(out)
print("RAW_SECONDS", time.perf_counter() - start)
"""


def _author_texts(settings: Settings) -> tuple[list[str], str]:
    chunks = latest_features_chunks(settings.home)
    if chunks:
        return read_texts(chunks), str(chunks)
    corpus = ROOT / "data" / "demo-corpus"
    texts: list[str] = []
    for file in sorted(corpus.glob("*")) if corpus.is_dir() else []:
        texts += [
            part.strip() for part in file.read_text(encoding="utf-8").split("\n\n") if len(part.strip()) > 120
        ]
    if len(texts) >= 8:
        return texts, str(corpus)
    return read_texts(ROOT / "README.md"), "README.md"


def _model(settings: Settings, quick: bool, scratch: Path) -> Path:
    from twinops.models.bundled import pull_all

    pull_all(settings)
    real = settings.models_dir / "smollm2-135m-instruct"
    if not quick:
        return real
    from twinops.models.tiny import build_tiny_llama

    return build_tiny_llama(real, scratch / "tiny-llama")


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="Tiny random Llama instead of the 135M model.")
    parser.add_argument("--samples", type=int, default=32, help="Calibration texts (default 32).")
    parser.add_argument(
        "--max-seq-len", type=int, default=256, help="Tokens per calibration text (default 256)."
    )
    args = parser.parse_args()
    settings = Settings(home=Path(os.environ.get("TWINOPS_HOME", ROOT / ".twinops")))
    try:
        python = quantize_python(settings)
    except Exception as error:
        print(f"skipped: {error}")
        return 0
    samples = args.samples
    group_size = 32 if args.quick else 64
    texts, source = _author_texts(settings)
    with tempfile.TemporaryDirectory(prefix="twinops-bench-gptq-") as scratch_name:
        scratch = Path(scratch_name)
        model = _model(settings, args.quick, scratch)
        job = QuantizeJob(
            model_path=model,
            output_dir=scratch / "twinops-gptq",
            group_size=group_size,
            calibration_texts=texts,
            calibration_samples=samples,
            held_out_samples=8,
            max_seq_len=args.max_seq_len,
        )
        started = time.perf_counter()
        result = run_in_quantize_env(job, settings)
        end_to_end = time.perf_counter() - started

        # The raw library on the very same calibration texts (twinops' split, same seed).
        from twinops.quantize.calibration import split_texts

        calibration, _ = split_texts(texts, calibration=samples, held_out=8, seed=job.seed)
        # The bundled model's config.json still names its GGUF origin; gptqmodel needs the same
        # plain view of it that twinops gives it (see twinops.quantize.gptq._plain_source).
        from twinops.quantize.gptq import _plain_source

        raw_source = _plain_source(model, scratch / "raw-source")
        texts_file = scratch / "calibration.json"
        texts_file.write_text(json.dumps(calibration))
        raw = subprocess.run(
            [
                str(python),
                "-c",
                RAW_GPTQMODEL,
                str(raw_source),
                str(scratch / "raw-gptq"),
                str(group_size),
                str(texts_file),
                str(args.max_seq_len),
            ],
            capture_output=True,
            text=True,
            check=True,
        )
        raw_seconds = float(raw.stdout.split("RAW_SECONDS", 1)[1].split()[0])

    print(f"model: {'tiny random Llama' if args.quick else 'SmolLM2-135M'}; author text: {source}")
    print(f"calibration texts: {result.calibration_samples}, held-out texts: {result.held_out_samples}")
    print(f"GPTQ time (twinops, load+quantize+pack+save): {result.seconds:8.1f} s")
    overhead = result.seconds / raw_seconds
    print(f"GPTQ time (raw gptqmodel, same work):        {raw_seconds:8.1f} s  overhead ratio {overhead:.2f}")
    print(f"end to end incl. perplexity before/after and process start: {end_to_end:.1f} s")
    print(f"size on disk: {result.size_before_bytes / 1e6:.1f} MB -> {result.size_after_bytes / 1e6:.1f} MB")
    size_ok = "ok" if result.linear_size_ratio <= SIZE_GOAL else "ABOVE GOAL"
    ppl_ok = "ok" if result.perplexity_ratio <= PERPLEXITY_GOAL else "ABOVE GOAL"
    print(f"linear layers quantized/bf16: {result.linear_size_ratio:.3f} (goal <= {SIZE_GOAL}) {size_ok}")
    print(
        f"perplexity {result.perplexity_before:.2f} -> {result.perplexity_after:.2f}: ratio "
        f"{result.perplexity_ratio:.3f} (goal <= {PERPLEXITY_GOAL}) {ppl_ok}"
    )
    print_evaluation_lines(settings.home)
    return 0


def print_evaluation_lines(home: Path) -> None:
    """How the newest evaluation under ``home`` scored each model: backend (GPTQ kernels or not),
    golden perplexity with its interval, the kernels-vs-float check, and seconds per model."""
    from twinops.domain.stats import format_interval

    reports = sorted(home.glob("reports/evaluation/*/report.json"), key=lambda path: path.stat().st_mtime)
    if not reports:
        print(f"evaluation: no report under {home / 'reports' / 'evaluation'} (run `make run`)")
        return
    data = json.loads(reports[-1].read_text())
    print(f"evaluation {reports[-1].parent.name} ({data['questions']} golden texts):")
    for scores in data.get("models", []):
        metric = "golden_perplexity"
        value = format_interval(scores["metrics"].get(metric), scores["intervals"].get(metric))
        seconds = scores.get("seconds") or 0.0
        print(
            f"  {scores['name']:<10} {scores.get('backend') or '-':<17} "
            f"perplexity {value:<28} {seconds:7.1f} s"
        )
        for note in scores.get("notes", []):
            print(f"    {note}")


if __name__ == "__main__":
    sys.exit(main())
