"""A rank of ``twinops train sft`` under torchrun that also leaves its LoRA weights for the test to compare.

Run as ``python -m torch.distributed.run --nproc_per_node N distributed_worker.py OUT_DIR <twinops args>``.
The only addition to the real CLI path: after ``Trainer.train`` returns, each rank saves its adapter
state dict to ``OUT_DIR/rank<R>.pt`` (rank 1 never writes the run folder, so this is the only way to see
its weights).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import torch
import transformers
from peft import get_peft_model_state_dict

from twinops.cli import main

OUT_DIR = Path(sys.argv[1])
_train = transformers.Trainer.train


def _train_and_keep_weights(self, *args, **kwargs):
    output = _train(self, *args, **kwargs)
    state = get_peft_model_state_dict(self.accelerator.unwrap_model(self.model))
    torch.save(
        {name: tensor.detach().clone() for name, tensor in state.items()},
        OUT_DIR / f"rank{os.environ['RANK']}.pt",
    )
    return output


transformers.Trainer.train = _train_and_keep_weights
sys.exit(main(sys.argv[2:]))
