"""``python -m twinops.quantize``: the GPTQ step as a process (run by ``.venv-quantize/bin/python``
locally, as the container command on a cluster).

Everything the quantizer prints goes to stderr; stdout carries exactly one line,
``TWINOPS_RESULT {json}`` on success or ``TWINOPS_ERROR {json}`` for a user-fixable problem (exit 2),
which ``twinops.quantize.runner`` parses.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from twinops.quantize.job import DEFAULT_GROUP_SIZE, DEFAULT_HELD_OUT, ERROR_PREFIX, RESULT_PREFIX


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m twinops.quantize",
        description=(
            "4-bit GPTQ of a merged causal LM with gptqmodel, calibrated on the author's own texts. "
            "Writes a standard GPTQ folder (config.json carries quantization_config: transformers "
            "and vLLM load it) and reports size on disk and held-out perplexity before and after. "
            "Runs in the .venv-quantize environment (gptqmodel needs protobuf>=7.34); the core "
            "environment calls it through `twinops quantize`."
        ),
    )
    parser.add_argument("--job", type=Path, help="A QuantizeJob as a JSON or YAML file (flags are ignored).")
    parser.add_argument("--model", type=Path, help="Merged HF model folder to quantize.")
    parser.add_argument("--output", type=Path, help="Folder for the GPTQ model.")
    parser.add_argument("--bits", type=int, default=4, choices=(2, 3, 4, 8), help="Weight bits (default 4).")
    parser.add_argument(
        "--group-size",
        type=int,
        default=DEFAULT_GROUP_SIZE,
        help=f"Must divide every linear width (SmolLM2: 64 or 32; default {DEFAULT_GROUP_SIZE}).",
    )
    parser.add_argument("--calibration", type=Path, help="features folder, chunks.jsonl or dataset folder.")
    parser.add_argument("--samples", type=int, default=64, help="Calibration texts (default 64).")
    parser.add_argument(
        "--held-out",
        type=int,
        default=DEFAULT_HELD_OUT,
        help=f"Held-out texts for perplexity (default {DEFAULT_HELD_OUT}).",
    )
    parser.add_argument("--max-seq-len", type=int, default=256, help="Tokens per text (default 256).")
    parser.add_argument("--desc-act", action="store_true", help="Act-order quantization (slower kernels).")
    parser.add_argument("--seed", type=int, default=0)
    return parser


def _job(args: argparse.Namespace):
    from twinops.errors import ConfigError
    from twinops.quantize.job import QuantizeJob

    if args.job:
        from twinops.infra.config_files import load_config

        return load_config(QuantizeJob, args.job, what="quantize job")
    if not args.model or not args.output:
        raise ConfigError("--model and --output are required (or pass --job FILE)")
    return QuantizeJob(
        model_path=args.model,
        output_dir=args.output,
        bits=args.bits,
        group_size=args.group_size,
        calibration_path=args.calibration,
        calibration_samples=args.samples,
        held_out_samples=args.held_out,
        max_seq_len=args.max_seq_len,
        desc_act=args.desc_act,
        seed=args.seed,
    )


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    # Keep stdout for the one result line: the quantizer's logs and bars go to stderr (fd level,
    # because its logger holds on to the original stream).
    result_stream = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    from pydantic import ValidationError

    from twinops.errors import TwinopsError, first_problem

    try:
        from twinops.quantize.gptq import quantize

        result = quantize(_job(args))
    except (TwinopsError, ValidationError) as error:
        if isinstance(error, ValidationError):
            message = f"invalid quantize job: {first_problem(error).line()}"
        else:
            message = str(error).splitlines()[0]
        result_stream.write(ERROR_PREFIX + json.dumps({"message": message}) + "\n")
        result_stream.flush()
        return 2
    result_stream.write(RESULT_PREFIX + result.model_dump_json() + "\n")
    result_stream.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
