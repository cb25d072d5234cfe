"""Training benchmark: SFT steps per second on 2 CPU ranks against 1, at the same global batch.

Both sides train the same LoRA SFT (``build_sft_trainer``, as ``train_sft`` builds it, through
``bench/training/run.py``'s ``twinops_trainer``) on the same rows, for the same timed steps after one
warm-up step, each rank started by torchrun as ``twinops train sft --nproc N`` starts it (DDP over
gloo on CPU). The global batch is the same: 1 rank x G rows, or 2 ranks x G/2. Each rank computes
with one thread, so the second rank adds the second core (what DDP scales), rather than comparing
DDP with torch's own intra-op threads on one rank (``--threads`` changes it).

Scaling efficiency = (steps/s on N ranks) / (steps/s on 1 rank) / N: 1.0 is linear (each rank does
1/N of a step's work and the all-reduce costs nothing). On 2 CPU cores that other work also uses it
moves with that load (the load average is printed with the result); the gloo all-reduce of the
LoRA gradients is small. docs/benchmarks.md gives the figures to expect on GPUs.

    .venv/bin/python bench/training/ranks.py [--steps N] [--global-batch G] [--real]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

sys.path.insert(0, str(Path(__file__).resolve().parent))

from run import rows, twinops_trainer  # bench/training/run.py, beside this file

from twinops.models.tiny import build_tiny_llama
from twinops.settings import Settings
from twinops.training.config import SFTJob, TrainerSpec
from twinops.training.distributed import TORCHRUN_MODULE, available_ranks


def worker(
    model_path: str, *, steps: int, global_batch: int, length: int, threads: int, output: Path
) -> None:
    """One rank: build the trainer, warm up one step, time ``steps``; rank 0 prints steps/s."""
    import torch

    from twinops.training.distributed import is_main_process, process_state
    from twinops.training.runs import quiet_libraries

    world = int(os.environ.get("WORLD_SIZE", "1"))
    quiet_libraries()
    process_state()  # accelerate's DDP state from torchrun's environment, as the stages set it up
    torch.set_num_threads(threads)  # and OMP_NUM_THREADS, which accelerate reads (see launch)
    spec = TrainerSpec(
        max_steps=1, max_length=length, per_device_train_batch_size=global_batch // world, device="cpu"
    )
    job = SFTJob(trainer=spec, progress=False, lora={"dropout": 0.0})
    torch.manual_seed(0)
    trainer = twinops_trainer(model_path, job, rows(global_batch * (steps + 1)), output)
    trainer.train()  # warm-up: allocator, kernels, process group
    trainer.args.max_steps = steps
    started = time.perf_counter()
    trainer.train()
    elapsed = time.perf_counter() - started
    if is_main_process():
        print(
            json.dumps({"ranks": world, "threads": torch.get_num_threads(), "steps_per_s": steps / elapsed})
        )


def launch(nproc: int, args: argparse.Namespace, model_path: str, scratch: Path) -> dict:
    command = [sys.executable, "-m", TORCHRUN_MODULE, "--standalone", "--nproc_per_node", str(nproc)]
    command += [__file__, "--worker", model_path, "--steps", str(args.steps)]
    command += ["--global-batch", str(args.global_batch), "--length", str(args.length)]
    command += ["--threads", str(args.threads)]
    command += ["--output", str(scratch / f"ranks-{nproc}")]
    # accelerate sets torch's thread count from OMP_NUM_THREADS (or its own guess) when it starts.
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
    done = subprocess.run(command, capture_output=True, text=True, check=False, env=env)
    if done.returncode:
        sys.exit(f"{nproc} rank(s) failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--steps", type=int, default=10, help="Timed optimizer steps per side.")
    parser.add_argument("--global-batch", type=int, default=8, help="Rows per optimizer step, all ranks.")
    parser.add_argument("--length", type=int, default=128, help="Tokens per row at most.")
    parser.add_argument("--ranks", type=int, default=2, help="Ranks to compare against 1.")
    parser.add_argument("--repeat", type=int, default=2, help="Interleaved rounds (1 rank, N ranks).")
    parser.add_argument("--threads", type=int, default=1, help="Compute threads per rank.")
    parser.add_argument("--real", action="store_true", help="The bundled SmolLM2-135M, not the tiny Llama.")
    parser.add_argument("--worker", metavar="MODEL", help=argparse.SUPPRESS)
    parser.add_argument("--output", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(
            args.worker,
            steps=args.steps,
            global_batch=args.global_batch,
            length=args.length,
            threads=args.threads,
            output=args.output,
        )
        return 0
    if args.global_batch % args.ranks:
        sys.exit(
            f"--global-batch {args.global_batch} does not split over {args.ranks} ranks: pass a multiple"
        )
    if args.ranks > available_ranks("cpu"):
        sys.exit(f"--ranks {args.ranks} is more than this machine's {available_ranks('cpu')} cores")

    settings = Settings(home=Path(os.environ.get("TWINOPS_HOME", ".twinops")))
    bundled = settings.models_dir / "smollm2-135m-instruct"
    if not (bundled / "config.json").exists():
        sys.exit(f"bundled model missing at {bundled}: run `twinops models pull` (or `make models`)")
    with tempfile.TemporaryDirectory() as scratch:
        scratch_dir = Path(scratch)
        model = str(bundled) if args.real else str(build_tiny_llama(bundled, scratch_dir / "tiny"))
        label = "SmolLM2-135M" if args.real else "tiny random Llama (2 layers, 64 wide)"
        print(
            f"LoRA SFT on {label}: global batch {args.global_batch}, max length {args.length}, "
            f"{args.steps} timed steps, {args.threads} thread(s) per rank, {available_ranks('cpu')} CPU cores"
        )
        # Interleaved rounds, the median of each side: other load on the machine hits both alike.
        rounds = [
            (launch(1, args, model, scratch_dir), launch(args.ranks, args, model, scratch_dir))
            for _ in range(args.repeat)
        ]
    one = statistics.median(first["steps_per_s"] for first, _ in rounds)
    many = statistics.median(second["steps_per_s"] for _, second in rounds)
    print(f"{'ranks':>5} {'threads/rank':>13} {'steps/s (median of ' + str(args.repeat) + ')':>24}")
    print(f"{1:>5} {rounds[0][0]['threads']:>13} {one:>24.2f}")
    print(f"{args.ranks:>5} {rounds[0][1]['threads']:>13} {many:>24.2f}")
    speedup = many / one
    print(f"speed-up {speedup:.2f}x on {args.ranks} ranks; scaling efficiency {speedup / args.ranks:.2f}")
    print(f"load average meanwhile (1 min): {os.getloadavg()[0]:.1f} on {available_ranks('cpu')} cores")
    return 0


if __name__ == "__main__":
    sys.exit(main())
