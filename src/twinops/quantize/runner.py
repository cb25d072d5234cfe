"""Run the GPTQ step in its own interpreter, the way a container component runs on a cluster.

The core environment cannot import gptqmodel (protobuf conflict with kfp), so ``twinops quantize``
and the local pipeline runner spawn ``python -m twinops.quantize --job FILE`` with the
``.venv-quantize`` interpreter and read back its one ``TWINOPS_RESULT {json}`` line.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import twinops
from twinops.errors import ConfigError, ServiceUnavailable
from twinops.infra.runs import latest_of, runs_dir
from twinops.quantize.checks import check_group_size
from twinops.quantize.job import ERROR_PREFIX, RESULT_PREFIX, QuantizeJob, QuantizeResult
from twinops.settings import Settings

PROJECT_ROOT = Path(twinops.__file__).resolve().parents[2]


def quantize_python(settings: Settings) -> Path:
    """The interpreter that has gptqmodel: the setting, else .venv-quantize, else this one if it can."""
    if settings.quantize_python:
        python = Path(settings.quantize_python).expanduser()
        if not python.exists():
            raise ServiceUnavailable(
                f"TWINOPS_QUANTIZE_PYTHON={python} does not exist: point it at the GPTQ environment's python",
                setting="TWINOPS_QUANTIZE_PYTHON",
            )
        return python
    for root in (Path.cwd(), PROJECT_ROOT):
        candidate = root / ".venv-quantize" / "bin" / "python"
        if candidate.exists():
            return candidate
    if importlib.util.find_spec("gptqmodel") is not None:  # the quantize container image
        return Path(sys.executable)
    raise ServiceUnavailable(
        "the GPTQ environment .venv-quantize is missing: run `make .venv-quantize/.installed` "
        "(or set TWINOPS_QUANTIZE_PYTHON to a python with gptqmodel)",
        setting="TWINOPS_QUANTIZE_PYTHON",
    )


def log_path(job: QuantizeJob) -> Path:
    return job.output_dir.with_name(job.output_dir.name + ".quantize.log")


def run_in_quantize_env(
    job: QuantizeJob,
    settings: Settings,
    *,
    on_log_line: Callable[[str], None] | None = None,
) -> QuantizeResult:
    """Quantize in the GPTQ environment; raise the child's one-line error as a ``ConfigError``."""
    check_group_size(job.model_path, job.group_size)  # fail here, before a process starts
    python = quantize_python(settings)
    job = job.model_copy(
        update={
            "model_path": job.model_path.expanduser().resolve(),
            "output_dir": job.output_dir.expanduser().resolve(),
        }
    )
    job.output_dir.parent.mkdir(parents=True, exist_ok=True)
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "TWINOPS_HOME": str(settings.home),
    }
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as handle:
        handle.write(job.model_dump_json())
        job_file = Path(handle.name)
    log_file = log_path(job)
    try:
        with log_file.open("w", encoding="utf-8") as log:
            process = subprocess.Popen(  # noqa: S603 - argv built by twinops, no shell
                [str(python), "-m", "twinops.quantize", "--job", str(job_file)],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                env=env,
                # gptqmodel writes a logs/ folder where it starts: keep it beside the outputs.
                cwd=job.output_dir.parent,
            )
            assert process.stderr is not None and process.stdout is not None
            for line in process.stderr:
                log.write(line)
                if on_log_line:
                    on_log_line(line.rstrip())
            stdout = process.stdout.read()
            code = process.wait()
    finally:
        job_file.unlink(missing_ok=True)
    return _parse(stdout, code, log_file)


def _parse(stdout: str, code: int, log_file: Path) -> QuantizeResult:
    for line in reversed(stdout.splitlines()):
        if line.startswith(RESULT_PREFIX):
            return QuantizeResult.model_validate_json(line.removeprefix(RESULT_PREFIX))
        if line.startswith(ERROR_PREFIX):
            raise ConfigError(json.loads(line.removeprefix(ERROR_PREFIX))["message"])
    tail = (
        log_file.read_text(encoding="utf-8", errors="replace").strip().splitlines()[-1:]
        if log_file.exists()
        else []
    )
    last = tail[0][:200] if tail else "no output"
    raise ServiceUnavailable(
        f"the GPTQ process exited with code {code} without a result ({last}): see {log_file}"
    )


def latest_merged_model(settings: Settings) -> Path:
    """The newest finished DPO run's merged model (else SFT's): what the chain quantizes."""
    found = latest_of(("dpo", "sft"), settings)
    if found is None:
        raise ConfigError(
            f"no merged SFT/DPO model under {runs_dir(settings)}: "
            "train one (`twinops train sft`) or pass --model"
        )
    return found[1]


def default_output_dir(settings: Settings, model_path: Path, bits: int, group_size: int) -> Path:
    """``runs/gptq/<source run>-w<bits>g<group>`` (the folder itself is the GPTQ model)."""
    source = model_path.parent.name if model_path.name == "merged" else model_path.name
    return settings.home / "runs" / "gptq" / f"{source}-w{bits}g{group_size}"
