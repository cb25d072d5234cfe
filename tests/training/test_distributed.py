"""SFT on 2 CPU ranks (torchrun, DDP over gloo) is the same code path as on 1, and gives one run.

Real torchrun, real gloo, real TRL on the tiny random Llama, with MongoDB and MLflow (sqlite) real.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from twinops.cli import main
from twinops.domain.versions import DatasetKind
from twinops.training import SFTJob, train_sft
from twinops.training.distributed import TORCHRUN_MODULE, available_ranks, torchrun_command

WORKER = Path(__file__).with_name("distributed_worker.py")
STEPS = 3
GLOBAL_BATCH = 4
# Same data, order and global batch; what differs is how the batch is padded (per rank vs whole) and
# the float order of the all-reduce, so the curves agree to float noise, not bit for bit (measured
# here: 9e-8 relative at most over the 3 steps).
LOSS_TOLERANCE = 1e-5


def _sft_job(tiny_llama: Path, *, run_name: str, per_device_batch: int) -> dict:
    return {
        "model": str(tiny_llama),
        "run_name": run_name,
        "progress": False,
        # No dropout: its masks are drawn per rank, which alone would make the curves differ.
        "lora": {"dropout": 0.0},
        "trainer": {
            "max_steps": STEPS,
            "per_device_train_batch_size": per_device_batch,
            "max_length": 64,
            "max_eval_samples": 4,
            "device": "cpu",
            "logging_steps": 1,
        },
    }


def _loss_curve(client, run_id: str) -> list[float]:
    history = sorted(client.get_metric_history(run_id, "loss"), key=lambda metric: metric.step)
    return [metric.value for metric in history]


@pytest.mark.slow
def test_two_cpu_ranks_train_one_run_like_one_rank(
    training_settings, make_dataset, tiny_llama: Path, tmp_path: Path
) -> None:
    import mlflow
    import torch

    make_dataset(DatasetKind.INSTRUCTION, train=8, test=4)
    config = tmp_path / "two.yaml"
    config.write_text(yaml.safe_dump(_sft_job(tiny_llama, run_name="two-ranks", per_device_batch=2)))
    weights = tmp_path / "weights"
    weights.mkdir()
    command = [sys.executable, "-m", TORCHRUN_MODULE, "--standalone", "--nproc_per_node", "2"]
    command += [str(WORKER), str(weights), "train", "sft", "--config", str(config), "--json"]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    # Only rank 0 prints the summary (after whatever banners imported libraries print on stdout).
    assert done.stdout.count('"mlflow_run_id"') == 1
    two = json.loads(done.stdout[done.stdout.index("{") :])

    # Both ranks end with the same adapter (DDP all-reduced every gradient).
    rank0, rank1 = torch.load(weights / "rank0.pt"), torch.load(weights / "rank1.pt")
    assert rank0.keys() == rank1.keys() and any("lora_B" in name for name in rank0)
    assert all(torch.equal(rank0[name], rank1[name]) for name in rank0)

    # One run folder, one MLflow run, nothing half-written.
    runs = training_settings.home / "runs" / "sft"
    assert [path.name for path in runs.iterdir()] == ["two-ranks"]
    assert (runs / "two-ranks" / "adapter" / "adapter_config.json").exists()
    client = mlflow.MlflowClient(training_settings.mlflow_tracking_uri)
    experiment = client.get_experiment_by_name(two["mlflow_experiment"])
    [only_run] = client.search_runs([experiment.experiment_id])
    assert only_run.info.run_id == two["mlflow_run_id"] and only_run.info.status == "FINISHED"
    assert two["steps"] == STEPS

    # One rank with the whole global batch follows the same loss curve.
    one_job = SFTJob.model_validate(_sft_job(tiny_llama, run_name="one-rank", per_device_batch=GLOBAL_BATCH))
    one = train_sft(one_job, training_settings)
    two_curve, one_curve = _loss_curve(client, two["mlflow_run_id"]), _loss_curve(client, one.mlflow_run_id)
    assert len(two_curve) == len(one_curve) == STEPS
    assert two_curve == pytest.approx(one_curve, rel=LOSS_TOLERANCE), (two_curve, one_curve)


@pytest.mark.slow
def test_dpo_on_two_ranks_through_the_cli(
    training_settings,
    make_dataset,
    tiny_llama: Path,
    capfd: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    """`twinops train dpo --nproc 2` starts torchrun itself; the ranks inherit the settings, and
    every rank logs to the configured tracking store or not at all: nothing appears in the working
    directory (a rank logging on MLflow's defaults leaves an mlflow.db there, with a stray run)."""
    import mlflow

    # An earlier test's MLflow run context (mlflow's env vars) must not reach the ranks' own store.
    for variable in ("MLFLOW_EXPERIMENT_ID", "MLFLOW_RUN_ID", "MLFLOW_EXPERIMENT_NAME"):
        monkeypatch.delenv(variable, raising=False)
    workdir = tmp_path / "workdir"
    workdir.mkdir()
    monkeypatch.chdir(workdir)

    make_dataset(DatasetKind.PREFERENCE, train=8, test=4)
    args = ["train", "dpo", "--nproc", "2", "--model", str(tiny_llama), "--max-steps", "2", "--json"]
    assert main(args) == 0, capfd.readouterr().err[-3000:]
    out = capfd.readouterr().out
    assert out.count('"mlflow_run_id"') == 1
    result = json.loads(out[out.index("{") :])
    assert result["stage"] == "dpo" and result["steps"] == 2
    runs = training_settings.home / "runs" / "dpo"
    assert [path.name for path in runs.iterdir()] == [result["run_name"]]
    client = mlflow.MlflowClient(training_settings.mlflow_tracking_uri)
    experiment = client.get_experiment_by_name(result["mlflow_experiment"])
    assert [run.info.run_id for run in client.search_runs([experiment.experiment_id])] == [
        result["mlflow_run_id"]
    ]
    assert sorted(path.name for path in workdir.iterdir()) == []


def test_the_cli_starts_ranks_through_torchrun() -> None:
    command = torchrun_command(2, ["train", "sft", "--json"])
    assert command[:3] == [sys.executable, "-m", TORCHRUN_MODULE]
    assert command[command.index("--nproc_per_node") + 1] == "2"
    assert command[-5:] == ["-m", "twinops.cli", "train", "sft", "--json"]


@pytest.mark.parametrize("stage", ["sft", "dpo"])
def test_more_ranks_than_cores_is_one_line(settings, stage: str, capsys: pytest.CaptureFixture[str]) -> None:
    too_many = max(available_ranks("cpu"), available_ranks("auto")) + 1
    assert main(["train", stage, "--nproc", str(too_many)]) == 2
    error = capsys.readouterr().err.strip()
    assert f"--nproc {too_many}" in error and "\n" not in error
