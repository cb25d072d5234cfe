"""``twinops quantize``: 4-bit GPTQ of the merged twin, in the GPTQ environment."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from twinops.cli.common import JSON_HELP, console, err_console, print_json
from twinops.quantize.job import DEFAULT_GROUP_SIZE, DEFAULT_HELD_OUT


def quantize(
    *,
    model: Annotated[
        str | None,
        typer.Option(
            "--model", help="Merged model folder (or bundled:NAME); default: the newest DPO, else SFT, run."
        ),
    ] = None,
    bits: Annotated[int, typer.Option("--bits", help="Weight bits: 2, 3, 4 or 8.")] = 4,
    group_size: Annotated[
        int,
        typer.Option(
            "--group-size", help="Columns per scale; must divide every linear width (SmolLM2: 64 or 32)."
        ),
    ] = DEFAULT_GROUP_SIZE,
    calibration: Annotated[
        Path | None,
        typer.Option(
            "--calibration", help="features folder / chunks.jsonl / dataset folder; default: newest features."
        ),
    ] = None,
    samples: Annotated[
        int, typer.Option("--samples", help="Calibration texts drawn from the author's corpus.")
    ] = 64,
    held_out: Annotated[
        int, typer.Option("--held-out", help="Author texts kept aside to measure perplexity.")
    ] = DEFAULT_HELD_OUT,
    output: Annotated[
        Path | None, typer.Option("--output", help="Output folder; default runs/gptq/<run>-w<bits>g<group>.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help=JSON_HELP)] = False,
) -> None:
    """Quantize the twin to GPTQ (gptqmodel, in .venv-quantize) and report size and perplexity.

    Calibration texts come from the author's own chunks; perplexity is measured on held-out author
    texts before and after. The output loads with transformers (optimum + gptqmodel) and vLLM.
    """
    from twinops.errors import ConfigError
    from twinops.models.resolve import resolve_model
    from twinops.quantize.calibration import latest_features_chunks
    from twinops.quantize.job import QuantizeJob
    from twinops.quantize.runner import default_output_dir, latest_merged_model, run_in_quantize_env
    from twinops.settings import get_settings

    settings = get_settings()
    if model:
        model_path = Path(resolve_model(model, settings, setting="--model"))
    else:
        model_path = latest_merged_model(settings)
        err_console.print(
            f"quantizing {model_path} (the newest DPO, else SFT, run; choose with --model)",
            highlight=False,
            soft_wrap=True,
        )
    source = calibration or latest_features_chunks(settings.home)
    if source is None:
        raise ConfigError("no calibration corpus: run `twinops features` first or pass --calibration")
    job = QuantizeJob(
        model_path=model_path,
        output_dir=output or default_output_dir(settings, model_path, bits, group_size),
        bits=bits,
        group_size=group_size,
        calibration_path=source,
        calibration_samples=samples,
        held_out_samples=held_out,
    )
    with err_console.status(f"GPTQ {bits}-bit of {model_path.name} in the GPTQ environment") as status:

        def _show(line: str) -> None:
            if line.strip():
                status.update(f"GPTQ {bits}-bit: {line.strip()[:90]}")

        result = run_in_quantize_env(job, settings, on_log_line=_show)
    if as_json:
        print_json(result)
        return
    console.print(f"[bold]GPTQ model[/] {result.output_dir}")
    console.print(
        f"size on disk {result.size_before_bytes / 1e6:.1f} MB -> {result.size_after_bytes / 1e6:.1f} MB; "
        f"linear layers {result.linear_size_ratio:.3f} of bf16"
    )
    console.print(
        f"perplexity {result.perplexity_before:.2f} -> {result.perplexity_after:.2f} "
        f"(x{result.perplexity_ratio:.3f}) on {result.held_out_samples} held-out texts; {result.seconds:.0f}s"
    )
