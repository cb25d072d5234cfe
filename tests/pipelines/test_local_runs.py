"""The feature pipeline, then a short training pipeline, run locally end to end with kfp.local.

Real parts throughout: the embedded MongoDB wire server, Qdrant local mode, MLflow on a sqlite
store, the bundled MiniLM embedder, a tiny random Llama as base model, GPTQ in .venv-quantize.
Tasks run as subprocesses of this Python, exactly as `twinops pipeline run-local` runs them.
"""

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from twinops.cli import main
from twinops.cli.common import print_run_summary
from twinops.pipelines.local import LocalRunResult, StepEvent, run_local
from twinops.settings import Settings, get_settings

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def local_home(
    tmp_path_factory: pytest.TempPathFactory, embedded_mongodb: str, bundled_models_dir: Path
) -> Iterator[Settings]:
    home = tmp_path_factory.mktemp("kfp-local") / "home"
    with pytest.MonkeyPatch.context() as patch:
        for key in list(os.environ):
            if key.startswith("TWINOPS_"):
                patch.delenv(key)
        patch.setenv("TWINOPS_HOME", str(home))
        patch.setenv("TWINOPS_MONGODB_URI", embedded_mongodb)
        patch.setenv("TWINOPS_MONGODB_DATABASE", "kfp_local_runs")
        patch.setenv("TWINOPS_MLFLOW_TRACKING_URI", f"sqlite:///{home.parent / 'mlflow.db'}")
        patch.setenv("TWINOPS_EMBEDDING_MODEL", str(bundled_models_dir / "all-minilm-l6-v2"))
        patch.setenv("TWINOPS_BASE_MODEL", str(bundled_models_dir / "smollm2-135m-instruct"))
        patch.chdir(ROOT)  # the default source `data/demo-corpus` resolves against the repo
        get_settings.cache_clear()
        yield get_settings()
        get_settings.cache_clear()


@pytest.fixture(scope="module")
def feature_run(local_home: Settings) -> LocalRunResult:
    return run_local("feature_pipeline", {"sources": "data/demo-corpus", "limit": "6"}, local_home)


def _pointer(run: LocalRunResult, task: str, name: str) -> dict:
    return json.loads((Path(run.run_dir) / task / name).read_text())


def test_feature_pipeline_runs_locally(feature_run: LocalRunResult, local_home: Settings) -> None:
    assert str(feature_run.output).startswith("features-")
    features = _pointer(feature_run, "chunk-embed-load", "features")
    assert features["version_id"] == feature_run.output
    assert (local_home.home / features["path"] / "chunks.jsonl").is_file()
    names = {Path(report).parent.name for report in feature_run.reports}
    assert {"ingest", "clean-and-gate", "chunk-embed-load", "feast-materialize"} <= names


def test_short_training_pipeline_runs_locally(
    feature_run: LocalRunResult, local_home: Settings, tiny_llama: Path, capsys
) -> None:
    params = {
        "base_model": str(tiny_llama),
        "features_version": str(feature_run.output),
        "max_chunks": "8",
        "sft_max_steps": "1",
        "dpo_max_steps": "1",
        "reranker_max_steps": "1",
        "eval_max_questions": "1",
        "quantize_bits": "4",
        "dataset_options": json.dumps({"generator": "extractive"}),
    }
    events: list[StepEvent] = []
    run = run_local("training_pipeline", params, local_home, on_event=events.append)
    evaluation = json.loads((Path(run.run_dir) / "evaluate" / "evaluation").read_text())
    # The gate nominates (challenger) exactly when its rules pass on the evaluation's evidence, and
    # never moves champion: the release does, after a canary.
    from twinops.training.gate import GateEvidence, judge, load_gate

    beats_base, checks = judge(
        load_gate(None, "twin-llm"), GateEvidence.model_validate(evaluation["evidence"]["twin-llm"])
    )
    assert run.output == ("challenger" if beats_base else "none"), [check.why for check in checks]
    (twin_line,) = [line for line in run.registered if line.startswith("twin-llm v")]
    assert (": challenger: " in twin_line) is beats_base and "champion" not in twin_line, twin_line
    from mlflow import MlflowClient

    aliases = MlflowClient(local_home.mlflow_tracking_uri).get_registered_model("twin-llm").aliases
    assert "champion" not in aliases
    assert ("challenger" in aliases) is beats_base, aliases
    quantized = _pointer(run, "quantize-local", "quantized")
    assert quantized["quantized"] is True
    config = json.loads((local_home.home / quantized["path"] / "config.json").read_text())
    assert "quantization_config" in config  # contract 5: a GPTQ folder transformers loads
    assert "golden_perplexity" in evaluation["metrics"]["twin-llm"]
    # No champion yet: the gate compares the twin with the base model scored in the same run.
    assert evaluation["evidence"]["twin-llm"]["reference_name"] == "base"
    assert evaluation["evidence"]["twin-reranker"]["reference_name"] == "cosine"
    assert any(report.endswith("register-and-gate/report") for report in run.reports)
    # What `make run` prints at the end: the evaluation table and the registered versions.
    assert run.evaluation_report and Path(run.evaluation_report).is_file()
    table = Path(run.evaluation_report).with_name("table.md").read_text()
    for model in ("base", "sft", "dpo", "twin"):
        assert f"| {model} |" in table, f"{model} is scored side by side"

    # What a person reads: one line per step as it ends, then the summary, in about 60 lines.
    ended = [event.step for event in events if event.state == "succeeded"]
    assert ended == [step.step for step in run.steps]
    assert {"sft", "dpo", "evaluate", "register-and-gate"} <= set(ended)
    assert all(Path(step.log).is_file() for step in run.steps), "each step's full log is kept"
    evaluate_log = Path(next(step.log for step in run.steps if step.step == "evaluate")).read_text()
    assert "evaluating: twin: answering" in evaluate_log, "the long evaluate step says what it is doing"
    sft = next(step for step in run.steps if step.step == "sft")
    assert "train_loss" in sft.figures
    print_run_summary(run)
    summary = capsys.readouterr().out
    assert "| twin |" in summary, "the evaluation table is printed"
    assert any(
        line.startswith("twin-llm v") and (": challenger: " in line or ": no alias: " in line)
        for line in summary.splitlines()
    ), summary
    assert run.logs_dir in summary
    assert len(ended) + len(summary.splitlines()) <= 60, summary


def test_pipeline_run_prints_a_line_per_step_and_keeps_the_logs(local_home: Settings, capsys) -> None:
    code = main(["pipeline", "run", "feature", "-p", "limit=6"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    lines = captured.err.splitlines() + captured.out.splitlines()
    assert len(lines) <= 20, "the executor's JSON stays in the log files"
    for step in ("ingest", "clean-and-gate", "chunk-embed-load", "feast-materialize"):
        assert sum(line.startswith(f"✓ {step} ") for line in lines) == 1, captured.err
    logs = Path(next(line for line in lines if line.startswith("step logs:")).split(":", 1)[1].strip())
    assert "executor_input" in (logs / "ingest.log").read_text(), "the executor's dumps are in the log"
    assert "Executing task" in (logs / "pipeline.log").read_text()


def test_a_failed_step_shows_its_log_tail_and_exits_1(local_home: Settings, capsys) -> None:
    code = main(["pipeline", "run", "feature", "-p", 'sources=["/nonexistent/twinops-source"]'])
    err = capsys.readouterr().err
    assert code == 1, err
    assert "✗ ingest" in err
    assert "every source of" in err, "the step's own reason, from the tail of its log"
    error = err.strip().splitlines()[-1]
    assert error.startswith("error: pipeline feature_pipeline failed at step ingest")
    log = Path(error.rsplit("its log is ", 1)[1])
    assert "Traceback" in log.read_text(), "the full log is on disk"
    assert "clean-and-gate" not in err, "nothing ran after the failed step"


def test_verbose_streams_each_steps_full_log(local_home: Settings, capsys) -> None:
    code = main(["pipeline", "run", "feature", "-p", "limit=6", "--verbose"])
    err = capsys.readouterr().err
    assert code == 0, err
    assert "executor_input" in err, "the executor's dumps, which the quiet run keeps in files"
    assert sum(line.startswith("✓ ingest ") for line in err.splitlines()) == 1, "the step lines stay"
