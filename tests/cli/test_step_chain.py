"""The step commands chain without paths (issue 15, item 7): each finds what the one before made.

`evaluate` without --model scores the base model and the newest SFT, DPO and GPTQ runs (or the
registry's champion and challenger) and says which; `quantize` takes the newest merged model;
`registry gate` without a name judges the newest version of every registered model.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from tests.support.one_line import one_line_error

from twinops.cli import main
from twinops.cli.evaluate import default_models
from twinops.errors import NotFound
from twinops.settings import get_settings

ROOT = Path(__file__).resolve().parents[2]


def _finished_run(home: Path, stage: str, run: str, subdir: str, mtime: float) -> Path:
    model = home / "runs" / stage / run / subdir
    model.mkdir(parents=True)
    (model / "config.json").write_text("{}")
    os.utime(model / "config.json", (mtime, mtime))
    return model.resolve()


def test_default_models_are_the_base_and_the_newest_finished_runs(settings) -> None:
    home = settings.home
    _finished_run(home, "sft", "sft-old", "merged", 1_000)
    newest_sft = _finished_run(home, "sft", "sft-new", "merged", 2_000)
    _finished_run(home, "sft", "sft-newer.partial", "merged", 3_000)  # still being written
    dpo = _finished_run(home, "dpo", "dpo-1", "merged", 2_500)
    gptq = _finished_run(home, "gptq", "dpo-1-w4g64", ".", 2_600)
    (home / "runs" / "dpo" / "dpo-broken" / "merged").mkdir(parents=True)  # no config.json

    models, origin = default_models(settings)
    assert [(m.name, m.path) for m in models] == [
        ("base", settings.base_model),
        ("sft", str(newest_sft)),
        ("dpo", str(dpo)),
        ("gptq", str(gptq)),
    ]
    assert "latest runs" in origin


def test_without_runs_or_registry_evaluate_says_what_to_do(home, capsys) -> None:
    with pytest.raises(NotFound, match="twinops train sft"):
        default_models(get_settings())
    one_line_error(main, ["evaluate"], capsys, "--model NAME=PATH")


def test_gate_without_a_name_and_nothing_registered_is_one_line(mlflow_settings, capsys) -> None:
    assert main(["registry", "gate"]) == 2
    err = capsys.readouterr().err
    assert "no registered model to gate" in err and "Traceback" not in err


@pytest.mark.slow
@pytest.mark.timeout(2400)  # nine real steps on 2 CPU cores
def test_the_steps_run_one_after_another_without_paths(
    home, embedded_mongodb, mlflow_settings, bundled_models_dir, tiny_llama, monkeypatch, capsys
) -> None:
    """etl -> features -> datasets build -> train sft/dpo/reranker -> quantize -> evaluate -> gate.

    Real services and models throughout (the embedded MongoDB, Qdrant local mode, MLflow on sqlite,
    MiniLM, a tiny random Llama as the base model, GPTQ in .venv-quantize); steps kept short.
    """
    monkeypatch.setenv("TWINOPS_MONGODB_URI", embedded_mongodb)
    monkeypatch.setenv("TWINOPS_MONGODB_DATABASE", "step_chain")
    monkeypatch.setenv("TWINOPS_BASE_MODEL", str(tiny_llama))
    monkeypatch.setenv("TWINOPS_EMBEDDING_MODEL", str(bundled_models_dir / "all-minilm-l6-v2"))
    get_settings.cache_clear()
    corpus = str(ROOT / "data" / "demo-corpus")

    steps = [
        ["etl", "--author", "Ada Quill", corpus],
        ["features", "--no-feast"],
        ["datasets", "build", "--generator", "extractive", "--max-chunks", "16", "--no-mlflow"],
        ["train", "sft", "--max-steps", "1"],
        ["train", "dpo", "--max-steps", "1", "--register"],
        ["train", "reranker", "--max-steps", "1", "--register"],
        ["quantize", "--samples", "8", "--held-out", "2"],
        ["evaluate", "--questions", "1", "--max-new-tokens", "4", "--no-judge"],
    ]
    for step in steps:
        code = main(step)
        captured = capsys.readouterr()
        assert code == 0, f"twinops {' '.join(step)} failed:\n{captured.err[-2000:]}"

    # evaluate says which models it picked: the base model and the newest run of each stage.
    (picked,) = [line for line in captured.err.splitlines() if line.startswith("evaluating base=")]
    assert all(f"{stage}=" in picked for stage in ("sft", "dpo", "gptq")), picked

    assert main(["registry", "gate", "--json"]) == 0
    decisions = json.loads(capsys.readouterr().out)
    assert set(decisions) == {"twin-llm", "twin-reranker"}
