"""kfp.local's stream split into step logs, and the events a person's terminal is drawn from.

The stream is the shape kfp 2.17's task dispatcher prints (coloured frame lines, the task's own
output indented by four spaces); the end-to-end runs in test_local_runs.py feed it for real.
"""

import json
from pathlib import Path

from twinops.pipelines.local import StepEvent, StepLogs, key_figures

CYAN, GREEN, RED, RESET = "\x1b[96m", "\x1b[92m", "\x1b[91m", "\x1b[0m"


def _frame(step: str, body: list[str], status: str) -> str:
    colour = GREEN if status == "SUCCESS" else RED
    lines = [
        f"13:19:26.679 - INFO - Executing task {CYAN}'{step}'{RESET}",
        "13:19:26.680 - INFO - Streamed logs:",
        "",
        *[f"    {line}" for line in body],
        f"13:19:28.783 - INFO - Task {CYAN}'{step}'{RESET} finished with status {colour}{status}{RESET}",
        "-" * 40,
    ]
    return "\n".join(lines) + "\n"


def _executor_output(root: Path, step: str, metrics: dict) -> None:
    folder = root / "twin-pipeline-2026-12-02" / step
    folder.mkdir(parents=True)
    payload = {"artifacts": {"metrics": {"artifacts": [{"metadata": metrics}]}}}
    (folder / "executor_output.json").write_text(json.dumps(payload))


def test_each_step_gets_its_own_log_and_one_event_when_it_ends(tmp_path: Path) -> None:
    kfp_root, folder = tmp_path / "kfp", tmp_path / "logs"
    kfp_root.mkdir()
    events: list[StepEvent] = []
    logs = StepLogs(folder, kfp_root, events.append)
    _executor_output(kfp_root, "ingest", {"new": 20.0, "updated": 0.0, "unchanged": 1.0, "failed": 0.0})
    _executor_output(kfp_root, "sft", {"train_loss": 1.23456, "eval_loss": 2.0})
    stream = _frame("ingest", ["crawling data/demo-corpus", "20 documents"], "SUCCESS")
    stream += _frame("sft", ["step 1/2", "step 2/2"], "SUCCESS")
    # kfp writes in pieces (the indent, then the line): a line may arrive split anywhere.
    for start in range(0, len(stream), 7):
        logs.write(stream[start : start + 7])
    logs.close()

    assert (folder / "ingest.log").read_text().splitlines()[-2:] == [
        "    crawling data/demo-corpus",
        "    20 documents",
    ]
    assert "step 2/2" in (folder / "sft.log").read_text()
    assert "crawling" not in (folder / "sft.log").read_text()
    assert "Executing task 'ingest'" in (folder / "pipeline.log").read_text()  # colours stripped
    ended = [(e.step, e.state, e.note) for e in events if e.state in {"succeeded", "failed"}]
    assert ended == [
        ("ingest", "succeeded", "new 20, updated 0, unchanged 1, failed 0"),
        ("sft", "succeeded", "train_loss 1.235"),
    ]
    running = [e.note for e in events if e.state == "running" and e.step == "sft"]
    assert running[-1] == "step 2/2", "the spinner shows the step's latest line"
    assert [step.step for step in logs.steps] == ["ingest", "sft"]
    assert logs.failed is None


def test_a_failed_step_keeps_its_tail_and_no_figures(tmp_path: Path) -> None:
    kfp_root = tmp_path / "kfp"
    kfp_root.mkdir()
    events: list[StepEvent] = []
    logs = StepLogs(tmp_path / "logs", kfp_root, events.append)
    body = [f"line {n}" for n in range(40)] + ["twinops.errors.TwinopsError: no rows"]
    logs.write(_frame("build-datasets", body, "FAILURE"))
    logs.write("13:19:29.000 - ERROR - Pipeline 'twin-pipeline' finished with status FAILURE\n")
    logs.close()

    assert logs.failed is not None
    assert logs.failed.step == "build-datasets"
    assert events[-1].state == "failed"
    assert events[-1].note == ""
    assert list(logs.tail)[-1] == "twinops.errors.TwinopsError: no rows", "pipeline lines stay out of it"
    assert len(logs.tail) < len(body), "a tail, not the whole log"


def test_key_figures_fall_back_to_the_first_metrics_of_an_unlisted_step(tmp_path: Path) -> None:
    _executor_output(tmp_path, "some-new-step", {"b": 2.0, "a": 0.5, "c": 3.0, "d": 4.0})
    output = tmp_path / "twin-pipeline-2026-12-02" / "some-new-step" / "executor_output.json"
    assert key_figures("some-new-step", output) == "a 0.5, b 2, c 3"
    assert key_figures("some-new-step", tmp_path / "missing.json") == ""


def test_key_figures_read_a_listed_figure_from_any_output_artifact(tmp_path: Path) -> None:
    """quantize-local has no Metrics artifact: its perplexity ratio is on the model pointer."""
    folder = tmp_path / "quantize-local"
    folder.mkdir()
    pointer = {"metadata": {"perplexity_ratio": 1.1319, "linear_size_ratio": 0.2724, "quantized": True}}
    (folder / "executor_output.json").write_text(
        json.dumps({"artifacts": {"quantized": {"artifacts": [pointer]}}})
    )
    assert key_figures("quantize-local", folder / "executor_output.json") == (
        "perplexity_ratio 1.132, linear_size_ratio 0.2724"
    )


def test_key_figures_name_the_authors_twin_whatever_its_name(tmp_path: Path) -> None:
    """Another author's twin registers as twin-llm-<author>: its figures are the step's key figures too."""
    metrics = {
        "twin-llm-mlflow-authors.golden_perplexity": 62.16,
        "twin-llm-mlflow-authors.golden_style_score": 0.36,
        "twin-reranker.golden_mrr": 0.7011,
        "twin-reranker.golden_hit_at_5": 0.6957,
    }
    _executor_output(tmp_path, "evaluate", metrics)
    output = tmp_path / "twin-pipeline-2026-12-02" / "evaluate" / "executor_output.json"
    assert key_figures("evaluate", output) == (
        "twin-llm-mlflow-authors.golden_perplexity 62.16, twin-reranker.golden_mrr 0.7011, "
        "twin-reranker.golden_hit_at_5 0.6957"
    )


def test_echo_copies_the_whole_stream_as_it_arrives(tmp_path: Path) -> None:
    """--verbose: every line, kfp's frame included, reaches the terminal too."""
    import io

    echoed = io.StringIO()
    logs = StepLogs(tmp_path / "logs", tmp_path, echo=echoed)
    stream = _frame("ingest", ["crawling data/demo-corpus"], "SUCCESS")
    logs.write(stream)
    logs.close()
    assert echoed.getvalue() == stream
    assert "crawling data/demo-corpus" in (tmp_path / "logs" / "ingest.log").read_text()
