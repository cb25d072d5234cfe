"""The quantize step between two pointer artifacts: ``python -m twinops.pipelines.quantize_step``.

On a cluster this is the container command of the ``quantize`` component, inside the quantize
image (gptqmodel pins protobuf>=7.34, which kfp cannot share, so that image has no kfp and the
step is a container component). Locally the same function runs in ``.venv-quantize`` through
``twinops.quantize.runner.run_in_quantize_env``. No kfp import here on purpose.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from twinops.pipelines.artifacts import POINTER_SCHEMA, pointer_path, summary_dict
from twinops.settings import Settings, get_settings

# The TrainResult fields naming the twin's adapter on the shared base (training.adapters).
SHARED_ADAPTER_FIELDS = ("shared_adapter_dir", "shared_base", "shared_adapter_missing")


class _PathArtifact:
    """The minimal artifact shape ``write_pointer`` needs, for a container's output path."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.uri = path
        self.metadata: dict[str, Any] = {}


def quantize_job_fields(
    pointer: dict, settings: Settings, bits: int, options: dict, calibration: Path | None
) -> dict:
    from twinops.quantize.job import DEFAULT_GROUP_SIZE
    from twinops.quantize.runner import default_output_dir

    model_path = pointer_path(pointer, settings)
    group_size = int(options.get("group_size", DEFAULT_GROUP_SIZE))
    fields: dict[str, Any] = {
        "model_path": str(model_path),
        "output_dir": str(default_output_dir(settings, model_path, bits, group_size)),
        "bits": bits,
        **options,
    }
    if calibration is not None and "calibration_path" not in options:
        fields["calibration_path"] = str(calibration)
    return fields


def pointer_for_result(result: Any, upstream: dict) -> dict:
    data = summary_dict(result)
    info = {key: value for key, value in data.items() if not isinstance(value, dict | list)}
    info.pop("output_dir", None)
    # What the registry needs travels on: lineage, base model, the training run and its metrics, and
    # the twin's adapter on the shared base (it makes the float model this one quantizes).
    for key in ("dataset_version_ids", "base_model", "mlflow_run_id", "metrics", *SHARED_ADAPTER_FIELDS):
        if key in upstream:
            info[key] = upstream[key]
    info["stage"] = "gptq"
    info["source_model"] = upstream.get("path")
    return info


def _read(path: str | None) -> dict | None:
    if not path:
        return None
    pointer = json.loads(Path(path).read_text(encoding="utf-8"))
    if pointer.get("schema") != POINTER_SCHEMA:
        raise SystemExit(f"{path} is not a twinops pointer: wire quantize after dpo and build-datasets")
    return pointer


def run(
    model_pointer: str, output_pointer: str, bits: int, options: dict, calibration_pointer: str | None = None
) -> dict:
    """Quantize the model ``model_pointer`` names; ``bits=0`` passes it through unquantized."""
    from twinops.pipelines.artifacts import write_pointer

    settings = get_settings()
    upstream = _read(model_pointer) or {}
    output = _PathArtifact(output_pointer)
    if bits == 0:
        # An explicit opt-out (e.g. a machine without the GPTQ environment): the model goes on as is.
        passthrough = {key: value for key, value in upstream.items() if key not in {"schema", "kind", "path"}}
        return write_pointer(
            output,
            kind=upstream.get("kind", "llm"),
            path=pointer_path(upstream, settings),
            settings=settings,
            quantized=False,
            **passthrough,
        )
    from twinops.quantize.job import QuantizeJob
    from twinops.quantize.runner import run_in_quantize_env

    calibration = _read(calibration_pointer)
    calibration_path = pointer_path(calibration, settings) if calibration else None
    job = QuantizeJob.model_validate(quantize_job_fields(upstream, settings, bits, options, calibration_path))
    result = run_in_quantize_env(job, settings)
    return write_pointer(
        output,
        kind="llm-gptq",
        path=result.output_dir,
        settings=settings,
        quantized=True,
        **pointer_for_result(result, upstream),
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m twinops.pipelines.quantize_step", description=__doc__)
    parser.add_argument("--model-pointer", required=True, help="Pointer file of the model to quantize.")
    parser.add_argument("--output-pointer", required=True, help="Where to write the quantized pointer.")
    parser.add_argument("--calibration-pointer", help="Pointer file of the calibration dataset.")
    parser.add_argument("--bits", type=int, default=4, help="Weight bits; 0 passes the model through.")
    parser.add_argument("--options", default="{}", help="Extra QuantizeJob fields as JSON.")
    args = parser.parse_args(argv)
    pointer = run(
        args.model_pointer, args.output_pointer, args.bits, json.loads(args.options), args.calibration_pointer
    )
    print(json.dumps(pointer, indent=2, sort_keys=True))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
