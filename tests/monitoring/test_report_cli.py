"""`twinops drift report|fit` end to end: the champion's lineage as the reference, a planted shift
in the current data, HTML + JSON + an MLflow run, the detectors saved beside the model version.

Real MongoDB (wire server), a real MLflow store (sqlite) and the bundled MiniLM; the dataset
versions are written as the datasets and features stages write them (a folder of JSONL + a row).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from twinops.cli import main

pytestmark = pytest.mark.slow


def _report(capsys, *args: str) -> tuple[int, dict | str]:
    code = main(["drift", "report", *args])
    captured = capsys.readouterr()
    return code, (json.loads(captured.out) if code == 0 and "--json" in args else captured.err)


def test_report_flags_a_language_shift_and_saves_the_detectors_beside_the_champion(
    drift_settings, champion_lineage, vocabulary, small_config, tmp_path, capsys
):
    v = vocabulary
    from mlflow import MlflowClient

    current = tmp_path / "current.jsonl"
    current.write_text(
        "".join(json.dumps({"question": q}) + "\n" for q in v.questions(v.tech[8:14], v.french[:4]))
    )
    code, summary = _report(
        capsys, "--reference", "latest", "--current", str(current), "--json", "--config", small_config
    )
    assert code == 0, summary
    assert summary["reference"] == "twin-llm v1 [champion]" and summary["drift"] is True
    queries = next(s for s in summary["spaces"] if s["space"] == "queries")
    assert queries["current_texts"] == 24 and queries["tested"] == 20  # half the 40-text reference
    assert any(r["is_drift"] for r in queries["results"])
    table = next(f for f in summary["features"] if f["table"] == "queries")
    assert {c["column"] for c in table["columns"] if c["drifted"]} >= {"query_language"}
    assert (
        Path(summary["html"][0]).read_text(encoding="utf-8").lstrip().lower().startswith("<html")
        or Path(summary["html"][0]).stat().st_size > 10_000
    )
    assert json.loads(Path(summary["json_path"]).read_text())["reference_id"] == summary["reference_id"]

    client = MlflowClient(drift_settings.mlflow_tracking_uri)
    run = client.get_run(summary["mlflow_run_id"])
    assert run.data.metrics["drift"] == 1.0
    assert {a.path for a in client.list_artifacts(run.info.run_id, "drift_report")} >= {
        "drift_report/report.html",
        "drift_report/report.json",
    }
    version = client.get_model_version("twin-llm", "1")
    assert version.tags["drift_reference"] == summary["reference_id"]
    beside = client.list_artifacts(champion_lineage["run_id"], f"drift/{summary['reference_id']}")
    assert "reference.json" in {Path(a.path).name for a in beside}


def test_report_on_a_dataset_version_compares_documents_and_chunks(
    drift_settings, champion_lineage, small_config, capsys
):
    code, summary = _report(
        capsys,
        "--reference",
        champion_lineage["instruction"],
        "--current",
        champion_lineage["shifted"],
        "--json",
        "--no-mlflow",
        "--config",
        small_config,
    )
    assert code == 0, summary
    assert summary["mlflow_run_id"] is None
    assert [s["space"] for s in summary["spaces"]] == ["chunks"]
    documents = next(f for f in summary["features"] if f["table"] == "documents")
    assert {c["column"] for c in documents["columns"] if c["drifted"]} >= {"language", "platform"}
    assert documents["dataset_drift"] is True


def test_same_distribution_report_is_not_drift(
    drift_settings, champion_lineage, vocabulary, small_config, tmp_path, capsys
):
    v = vocabulary
    current = tmp_path / "same.jsonl"
    current.write_text("".join(json.dumps(q) + "\n" for q in v.questions(v.tech[:8], v.english[5:8])))
    code, summary = _report(
        capsys, "--current", str(current), "--json", "--no-mlflow", "--config", small_config
    )
    assert code == 0, summary
    queries = next(s for s in summary["spaces"] if s["space"] == "queries")
    assert not any(r["is_drift"] for r in queries["results"] if r["detector"] == "evidently-mmd"), queries


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--current", "missing.jsonl"], "--current missing.jsonl does not exist"),
        (["--reference", "7", "--current", "requests"], "twin-llm has no version 7"),
        (
            ["--reference", "features-unknown", "--current", "requests"],
            "dataset version 'features-unknown' does not exist",
        ),
    ],
)
def test_bad_input_is_one_line_and_exit_2(drift_settings, champion_lineage, capsys, args, message):
    code, err = _report(capsys, *args)
    assert code == 2
    assert message in err and "Traceback" not in err


def test_fit_saves_the_reference_once(drift_settings, champion_lineage, small_config, capsys):
    assert main(["drift", "fit", "--json", "--config", small_config]) == 0
    first = json.loads(capsys.readouterr().out)
    assert set(first["spaces"]) == {"queries", "answers", "chunks"}
    assert first["detectors"]["queries"] == ["evidently-mmd", "evidently-distance"]  # the config's
    created = (Path(first["folder"]) / "reference.json").stat().st_mtime
    assert main(["drift", "fit", "--json", "--config", small_config]) == 0
    assert json.loads(capsys.readouterr().out)["reference_id"] == first["reference_id"]
    assert (Path(first["folder"]) / "reference.json").stat().st_mtime == created


def test_serve_answers_cloudevents_as_a_user_starts_it(
    drift_settings, champion_lineage, small_config, vocabulary, metric_reaches
):
    """`twinops drift serve` in its own process, as on a machine or in the drift image."""
    import os
    import subprocess
    import sys
    import time

    import httpx
    from cloudevents.conversion import to_binary
    from cloudevents.http import CloudEvent

    from twinops.services.process import free_port

    port = free_port()
    command = [
        sys.executable,
        "-m",
        "twinops",
        "drift",
        "serve",
        "--reference",
        champion_lineage["instruction"],
    ]
    command += ["--port", str(port), "--batch-size", "8", "--config", small_config]
    process = subprocess.Popen(command, env=dict(os.environ), stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            assert process.poll() is None, process.stderr.read()
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz").status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.5)
        v = vocabulary
        replies = []
        for index, text in enumerate(v.questions(v.cooking[:2], v.english[:4])):
            event = CloudEvent(
                {"type": "org.kubeflow.serving.inference.request", "source": "t", "id": str(index)},
                {"instances": [text]},
            )
            headers, body = to_binary(event)
            replies.append(
                httpx.post(f"http://127.0.0.1:{port}/", headers=dict(headers), content=body, timeout=120)
            )
        # As shipped, the batch's last event is answered at once and the verdict lands on /metrics.
        assert replies[-1].status_code == 202 and replies[-1].json()["meta"]["testing"] == 1
        drifted = {"detector": "evidently-mmd", "space": "queries"}
        url = f"http://127.0.0.1:{port}"
        assert metric_reaches(url, "twinops_drift_detected", 1.0, timeout=120, **drifted), "no verdict"
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_serve_on_a_busy_port_is_one_line(drift_settings, capsys):
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        code = main(["drift", "serve", "--port", str(busy.getsockname()[1])])
    err = capsys.readouterr().err
    assert code == 2 and "is in use" in err and "Traceback" not in err


def test_report_on_the_request_log_compares_questions_and_answers(
    drift_settings, champion_lineage, small_config, vocabulary, capsys
):
    from twinops.domain.serving import RagRequestRecord, SourceRef
    from twinops.infra.mongo import connect
    from twinops.infra.request_log import RequestLogRepository

    log = RequestLogRepository(connect(drift_settings))
    v = vocabulary
    for index, question in enumerate(v.questions(v.cooking[:4], v.english[:6])):
        source = SourceRef(chunk_id=f"c{index}", document_id="d", source_url="https://example.com", score=0.3)
        log.record(
            RagRequestRecord(
                request_id=f"r{index}",
                question=question,
                answer=f"I have not written about that. {question}",
                prompt_id="rag-answer",
                prompt_version=1,
                prompt_hash="h",
                sources=(source,),
            )
        )
    code, summary = _report(
        capsys, "--current", "requests", "--json", "--no-mlflow", "--config", small_config
    )
    assert code == 0, summary
    assert summary["current"] == "request log (24 newest)"
    assert {s["space"] for s in summary["spaces"]} == {"queries", "answers"}
    assert all(any(r["is_drift"] for r in s["results"]) for s in summary["spaces"])
    queries = next(f for f in summary["features"] if f["table"] == "queries")
    # The request log has retrieval scores the training data lacks: only shared columns are compared.
    assert {c["column"] for c in queries["columns"]} == {"query_words", "query_chars", "query_language"}
