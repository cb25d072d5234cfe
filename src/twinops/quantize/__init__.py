"""GPTQ quantization of the twin (runs in ``.venv-quantize``; the core env calls ``runner``).

Public API: ``QuantizeJob``, ``QuantizeResult``, ``quantize(job)`` (GPTQ env only),
``run_in_quantize_env(job, settings)`` (core env), ``check_group_size(model_path, group_size)``,
``is_gptq_folder(path)`` and ``load_gptq_as_float(path)`` (from ``twinops.models.gptq``: a GPTQ folder
as a float model, for evaluation).
"""

from __future__ import annotations

from twinops.models.gptq import is_gptq_folder, load_gptq_as_float
from twinops.quantize.checks import check_group_size
from twinops.quantize.job import QuantizeJob, QuantizeResult

__all__ = [
    "QuantizeJob",
    "QuantizeResult",
    "check_group_size",
    "is_gptq_folder",
    "load_gptq_as_float",
    "quantize",
    "run_in_quantize_env",
]


def __getattr__(name: str):
    # Deferred: gptq imports gptqmodel (GPTQ env only), runner is a core-env helper.
    if name == "quantize":
        from twinops.quantize.gptq import quantize

        return quantize
    if name == "run_in_quantize_env":
        from twinops.quantize.runner import run_in_quantize_env

        return run_in_quantize_env
    raise AttributeError(name)
