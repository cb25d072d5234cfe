"""Run folders under ``TWINOPS_HOME/runs/<stage>/<run>/``, and the newest finished model of a stage.

Training writes ``runs/dapt|sft|dpo/<run>/merged`` and ``runs/reranker/<run>/model``; ``twinops
quantize`` writes ``runs/gptq/<run>`` (the folder is the model). A run is finished when its model
folder has a ``config.json`` and the run is not a ``.partial`` staging folder. Step commands that
take a model (``train dpo``, ``quantize``, ``evaluate``) default to these, so the steps chain
without paths.
"""

from __future__ import annotations

from pathlib import Path

from twinops.settings import Settings

# Where the model of a stage's run lies, relative to the run folder.
MODEL_SUBDIR = {"dapt": "merged", "sft": "merged", "dpo": "merged", "reranker": "model", "gptq": "."}


def runs_dir(settings: Settings) -> Path:
    return settings.home / "runs"


def latest_model(stage: str, settings: Settings) -> Path | None:
    """The model folder of the newest finished run of ``stage``, or None when there is none."""
    subdir = MODEL_SUBDIR[stage]
    finished = [
        run
        for run in (runs_dir(settings) / stage).glob("*")
        if not run.name.endswith(".partial") and (run / subdir / "config.json").is_file()
    ]
    if not finished:
        return None
    newest = max(finished, key=lambda run: (run / subdir / "config.json").stat().st_mtime)
    return (newest / subdir).resolve()


def latest_of(stages: tuple[str, ...], settings: Settings) -> tuple[str, Path] | None:
    """The first stage of ``stages`` that has a finished run, and its model folder."""
    for stage in stages:
        found = latest_model(stage, settings)
        if found is not None:
            return stage, found
    return None
