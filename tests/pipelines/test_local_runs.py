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

from twinops.pipelines.local import LocalRunResult, run_local
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
    feature_run: LocalRunResult, local_home: Settings, tiny_llama: Path
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
    run = run_local("training_pipeline", params, local_home)
    assert run.output in ("champion", "challenger")  # champion only if it beat the base model
    quantized = _pointer(run, "quantize-local", "quantized")
    assert quantized["quantized"] is True
    config = json.loads((local_home.home / quantized["path"] / "config.json").read_text())
    assert "quantization_config" in config  # contract 5: a GPTQ folder transformers loads
    evaluation = json.loads((Path(run.run_dir) / "evaluate" / "evaluation").read_text())
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
    # Registered either way; whether it earns champion is the gate's call (a 3-step twin need not
    # beat the base model), which the register-and-gate report records.
    assert any(line.startswith("twin-llm v") for line in run.registered)
