"""One training code path for 1 to N ranks: what the stages need to know about the other ranks.

A stage runs the same way alone or as one of N processes started by ``torchrun`` (locally with
``twinops train sft --nproc N``, or on the cluster as a Kubeflow Trainer TrainJob): rank, world
size and device come from the environment torchrun sets (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``),
accelerate turns them into DDP (gloo on CPU, NCCL on GPUs), and TRL trains through accelerate.
Outside torchrun every function here is a no-op, so the single-process path is the same code.

Only rank 0 writes folders and talks to MLflow; the others wait for it at the barriers below.
"""

from __future__ import annotations

import os
import sys
from typing import Any, Literal

from twinops.errors import ConfigError

# torchrun's own launcher, as a module of the torch that trains (no `torchrun` script on PATH needed).
TORCHRUN_MODULE = "torch.distributed.run"


def available_ranks(device: Literal["auto", "cpu"] = "auto") -> int:
    """How many ranks this machine can run: one per GPU, else one per CPU core this process may use."""
    if device != "cpu" and has_cuda():
        import torch

        return torch.cuda.device_count()
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def check_nproc(nproc: int, device: Literal["auto", "cpu"] = "auto") -> None:
    """Refuse more ranks than ``available_ranks`` in one line naming ``--nproc``."""
    available = available_ranks(device)
    if nproc > available:
        unit = "GPU" if device != "cpu" and has_cuda() else "CPU core"
        raise ConfigError(
            f"--nproc {nproc} asks for more ranks than this machine can run ({available} {unit}"
            f"{'s' if available != 1 else ''}): pass --nproc {available} or less"
        )


def torchrun_command(nproc: int, twinops_args: list[str]) -> list[str]:
    """``python -m torch.distributed.run --standalone --nproc_per_node N -m twinops.cli <args>``."""
    return [
        sys.executable,
        "-m",
        TORCHRUN_MODULE,
        "--standalone",
        "--nproc_per_node",
        str(nproc),
        "-m",
        "twinops.cli",
        *twinops_args,
    ]


def process_state() -> Any:
    """accelerate's view of the ranks. Without a GPU it must be told so (``cpu=True``), or it ignores
    torchrun's environment and every rank believes it is the only one; the Trainer later sets up
    the same state again from its ``TrainingArguments``."""
    from accelerate import PartialState

    return PartialState(cpu=not has_cuda())


def is_main_process() -> bool:
    """True on the process that saves, merges and logs (rank 0; the only one without torchrun).

    Read from torchrun's ``RANK`` rather than accelerate's state, which the trainers reset and set up
    again: after a 2-rank DPO run it was seen answering True on rank 1 as well."""
    return int(os.environ.get("RANK", "0")) == 0


def world_size() -> int:
    """How many ranks train together (torchrun's ``WORLD_SIZE``; 1 without torchrun)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def wait_for_everyone() -> None:
    """A barrier across the ranks (nothing without torchrun)."""
    process_state().wait_for_everyone()


def from_main_process(value: Any) -> Any:
    """Rank 0's ``value`` on every rank (e.g. a run name with a timestamp in it)."""
    from accelerate.utils import broadcast_object_list

    if process_state().num_processes == 1:
        return value
    return broadcast_object_list([value], from_process=0)[0]


def has_cuda() -> bool:
    """Whether torch sees a CUDA device (accelerate's backend and the dataloader depend on it)."""
    import torch

    return torch.cuda.is_available()
