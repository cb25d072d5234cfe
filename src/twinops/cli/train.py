"""``twinops train``: DAPT, SFT and DPO with LoRA (merged), the reranker, and merging adapters."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from twinops.cli.common import JSON_HELP, console, print_json, progress_bars
from twinops.errors import ConfigError
from twinops.settings import get_settings

app = typer.Typer(
    name="train",
    help=(
        "Train the twin: `dapt` (LoRA on the author's own passages as plain text), `sft` (LoRA on "
        "the instruction dataset; `--from-dapt` starts from the DAPT model), then `dpo` (LoRA on the "
        "preference dataset, from the SFT model), and `reranker` (a MiniLM cross-encoder). Each run "
        "writes TWINOPS_HOME/runs/<stage>/<run>/ (adapter/ + merged/, or the reranker model) and "
        "one MLflow run. Defaults fit 2 CPU cores and the bundled 135M model in minutes; see "
        "configs/training/ for GPU configs; `--nproc N` trains with N ranks (torchrun)."
    ),
    no_args_is_help=True,
)

CONFIG_HELP = "Job YAML (configs/training/*.yaml); flags below override it."
DATASET_HELP = "DatasetVersion id to train on, or `latest` of the stage's kind."
MAX_STEPS_HELP = "Override trainer.max_steps (-1 = full epochs)."
REGISTER_HELP = "Register the model in MLflow as the new `challenger` (twin-llm / twin-reranker)."
NPROC_HELP = (
    "Ranks to train with on this machine: N > 1 starts N processes through torchrun (DDP, gloo on CPU); "
    "rank 0 saves and logs the one run."
)

ConfigOption = Annotated[Path | None, typer.Option("--config", "-c", help=CONFIG_HELP)]
DatasetOption = Annotated[str | None, typer.Option("--dataset", "-d", help=DATASET_HELP)]
MaxStepsOption = Annotated[int | None, typer.Option("--max-steps", help=MAX_STEPS_HELP)]
RegisterOption = Annotated[bool, typer.Option("--register", help=REGISTER_HELP)]
JsonOption = Annotated[bool, typer.Option("--json", help=JSON_HELP)]
NprocOption = Annotated[int, typer.Option("--nproc", min=1, help=NPROC_HELP)]


def _job(cls, config: Path | None, **overrides):
    job = cls.from_yaml(config) if config else cls()
    updates = {key: value for key, value in overrides.items() if value is not None and key != "max_steps"}
    if overrides.get("max_steps") is not None:
        updates["trainer"] = job.trainer.model_copy(update={"max_steps": overrides["max_steps"]})
    return job.model_copy(update=updates)


def _launch_ranks(nproc: int, device: str, args: list[str]) -> None:
    """Run ``twinops <args>`` as ``nproc`` ranks through torchrun and exit with its code."""
    import subprocess

    from twinops.training.distributed import check_nproc, torchrun_command

    check_nproc(nproc, device)  # type: ignore[arg-type]
    command = torchrun_command(nproc, args)
    raise typer.Exit(subprocess.run(command, check=False).returncode)  # noqa: S603 - argv built here, no shell


def _flags(**values) -> list[str]:
    """The options a rank gets again: ``--name value`` for set values, ``--name`` for true switches."""
    flags: list[str] = []
    for name, value in values.items():
        flag = "--" + name.replace("_", "-")
        if value is True:
            flags.append(flag)
        elif value is not None and value is not False:
            flags += [flag, str(value)]
    return flags


def _finish(result, register: bool, as_json: bool) -> None:
    from twinops.training.distributed import is_main_process

    if not is_main_process():  # the other ranks trained alongside; rank 0 reports the one run
        return
    settings = get_settings()
    if register:
        from twinops.training.registry import register_result

        result = result.model_copy(update={"registered": register_result(result, settings)})
    if as_json:
        print_json(result)
        return
    table = Table("field", "value", title=f"{result.stage} run {result.run_name}")
    table.add_row("model", result.model_dir)
    if result.adapter_dir:
        table.add_row("adapter", result.adapter_dir)
    table.add_row("started from", result.base_model)
    table.add_row("dataset versions", ", ".join(result.dataset_version_ids))
    table.add_row("steps", str(result.steps))
    for key in (
        "train_loss",
        "final_loss",
        "eval_loss",
        "passage_test_perplexity",
        "instruction_test_perplexity",
        "val_mrr",
        "val_cosine_mrr",
    ):
        if key in result.metrics:
            table.add_row(key, f"{result.metrics[key]:.4f}")
    table.add_row("mlflow", f"{result.mlflow_experiment} / {result.mlflow_run_id}")
    if result.registered:
        registered = result.registered
        table.add_row(
            "registered", f"{registered.name} v{registered.version} ({', '.join(registered.aliases)})"
        )
    console.print(table)


@app.command()
def dapt(
    *,
    config: ConfigOption = None,
    dataset: Annotated[
        str | None,
        typer.Option(
            "--dataset",
            "-d",
            help="Instruction DatasetVersion id whose train-split passages are read, or `latest`.",
        ),
    ] = None,
    model: Annotated[
        str | None, typer.Option("--model", help="Base model (default TWINOPS_BASE_MODEL).")
    ] = None,
    max_steps: MaxStepsOption = None,
    as_json: JsonOption = False,
    nproc: NprocOption = 1,
) -> None:
    """Domain-adaptive pretraining: LoRA on the author's own text, the step before SFT.

    Reads the answers of the instruction dataset's train split (the author's passages from the
    training documents; the held-out documents stay unseen) as plain text, with no chat template
    and every token in the loss, in blocks of trainer.max_length tokens. Runs num_train_epochs
    passes, at most trainer.step_cap steps. The adapter is merged into runs/dapt/<run>/merged;
    `twinops train sft --from-dapt` starts there with a fresh adapter.
    """
    from twinops.training.config import DAPTJob
    from twinops.training.dapt import train_dapt

    job = _job(DAPTJob, config, dataset=dataset, model=model, max_steps=max_steps)
    if nproc > 1:
        flags = _flags(config=config, dataset=dataset, model=model, max_steps=max_steps, json=as_json)
        _launch_ranks(nproc, job.trainer.device, ["train", "dapt", *flags])
    with progress_bars():
        result = train_dapt(job, get_settings())
    _finish(result, False, as_json)


@app.command()
def sft(
    *,
    config: ConfigOption = None,
    dataset: DatasetOption = None,
    model: Annotated[
        str | None, typer.Option("--model", help="Base model (default TWINOPS_BASE_MODEL).")
    ] = None,
    from_dapt: Annotated[
        bool,
        typer.Option(
            "--from-dapt", help="Start from the newest DAPT run's merged model (`twinops train dapt`)."
        ),
    ] = False,
    max_steps: MaxStepsOption = None,
    register: RegisterOption = False,
    as_json: JsonOption = False,
    nproc: NprocOption = 1,
) -> None:
    """Supervised fine-tuning with LoRA on the instruction dataset (loss on the answers only)."""
    from twinops.training.config import SFTJob
    from twinops.training.sft import train_sft

    if from_dapt:
        if model:
            raise ConfigError("--from-dapt and --model both name the start model: pass one of them")
        from twinops.training.dapt import latest_dapt_model

        model = latest_dapt_model(get_settings())
    job = _job(SFTJob, config, dataset=dataset, model=model, max_steps=max_steps)
    if nproc > 1:
        flags = _flags(config=config, dataset=dataset, model=model, max_steps=max_steps)
        flags += _flags(register=register, json=as_json)
        _launch_ranks(nproc, job.trainer.device, ["train", "sft", *flags])
    with progress_bars():
        result = train_sft(job, get_settings())
    _finish(result, register, as_json)


@app.command()
def dpo(
    *,
    config: ConfigOption = None,
    dataset: DatasetOption = None,
    model: Annotated[
        str | None, typer.Option("--model", help="Start model (default: the latest SFT run's merged/).")
    ] = None,
    beta: Annotated[float | None, typer.Option("--beta", help="Override the DPO beta.")] = None,
    max_steps: MaxStepsOption = None,
    register: RegisterOption = False,
    as_json: JsonOption = False,
    nproc: NprocOption = 1,
) -> None:
    """Preference tuning (DPO) with LoRA on the preference dataset, starting from the SFT model."""
    from twinops.training.config import DPOJob
    from twinops.training.dpo import train_dpo

    job = _job(DPOJob, config, dataset=dataset, model=model, beta=beta, max_steps=max_steps)
    if nproc > 1:
        flags = _flags(config=config, dataset=dataset, model=model, beta=beta, max_steps=max_steps)
        flags += _flags(register=register, json=as_json)
        _launch_ranks(nproc, job.trainer.device, ["train", "dpo", *flags])
    with progress_bars():
        result = train_dpo(job, get_settings())
    _finish(result, register, as_json)


@app.command()
def reranker(
    *,
    config: ConfigOption = None,
    dataset: DatasetOption = None,
    max_steps: MaxStepsOption = None,
    register: RegisterOption = False,
    as_json: JsonOption = False,
) -> None:
    """Fine-tune a cross-encoder reranker (from the bundled MiniLM) on the reranker pairs."""
    from twinops.training.config import RerankerJob
    from twinops.training.reranker import train_reranker

    job = _job(RerankerJob, config, dataset=dataset, max_steps=max_steps)
    with progress_bars():
        result = train_reranker(job, get_settings())
    _finish(result, register, as_json)


@app.command()
def merge(
    *,
    adapter: Annotated[Path, typer.Argument(help="A LoRA adapter folder (runs/<stage>/<run>/adapter).")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Folder for the merged HF model.")],
    base: Annotated[
        str | None, typer.Option("--base", help="Base model (default: the one the adapter names).")
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Merge a LoRA adapter into its base model and save a plain Hugging Face folder."""
    from twinops.training.merge import merge_adapter

    with console.status("merging adapter"):
        result = merge_adapter(adapter, output, get_settings(), base_model=base)
    if as_json:
        print_json(result)
    else:
        console.print(f"merged {result.adapter_dir} onto {result.base_model} → {result.output_dir}")
