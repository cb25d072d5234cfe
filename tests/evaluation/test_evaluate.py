"""evaluate() end to end: tiny Llama + a GPTQ folder, MiniLM, a fake judge, local Qdrant, sqlite MLflow."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from twinops.cli import main
from twinops.errors import NotFound
from twinops.evaluation import EvaluationJob, ModelSpec
from twinops.evaluation.data import load_golden
from twinops.evaluation.evaluate import evaluate


def _pack_rows(values, bits: int = 4):
    """[rows, cols] of 4-bit ints -> int32 [rows/8, cols], row r*8+j in nibble j (GPTQ v1 layout)."""
    import torch

    per_int = 32 // bits
    values = values.to(torch.int64).reshape(values.shape[0] // per_int, per_int, values.shape[1])
    packed = torch.zeros(values.shape[0], values.shape[2], dtype=torch.int64)
    for j in range(per_int):
        packed |= values[:, j, :] << (bits * j)
    return (packed - (packed >= 2**31).to(torch.int64) * 2**32).to(torch.int32)


def _rtn_gptq_folder(source: Path, target: Path, group_size: int = 32) -> Path:
    """A GPTQ-format (v1) folder made by round-to-nearest: gptqmodel's layout, without gptqmodel."""
    import torch
    from safetensors.torch import load_file, save_file

    from twinops.models.gptq import dequantize_linear
    from twinops.quantize.checks import LINEAR_SUFFIXES

    tensors = load_file(str(source / "model.safetensors"))
    out = {}
    for name, tensor in tensors.items():
        if not name.endswith(LINEAR_SUFFIXES):
            out[name] = tensor.to(torch.float16)
            continue
        prefix = name.removesuffix(".weight")
        weight = tensor.float().t()  # [in, out]
        in_f, out_f = weight.shape
        grouped = weight.reshape(in_f // group_size, group_size, out_f)
        scales = grouped.abs().amax(dim=1).clamp(min=1e-8) / 7  # [groups, out]
        q = (grouped / scales[:, None, :]).round().clamp(-8, 7) + 8
        q = q.reshape(in_f, out_f)
        zeros = torch.full((in_f // group_size, out_f), 8 - 1)  # v1 stores zero - 1
        out[f"{prefix}.qweight"] = _pack_rows(q)
        out[f"{prefix}.qzeros"] = _pack_rows(zeros.t()).t().contiguous()
        out[f"{prefix}.scales"] = scales.to(torch.float16)
        out[f"{prefix}.g_idx"] = (torch.arange(in_f) // group_size).to(torch.int32)
        expected = (
            (scales.to(torch.float16).float()[:, None, :] * (q.reshape(grouped.shape) - 8))
            .reshape(in_f, out_f)
            .t()
        )
        got = dequantize_linear(
            out[f"{prefix}.qweight"],
            out[f"{prefix}.qzeros"],
            out[f"{prefix}.scales"],
            out[f"{prefix}.g_idx"],
            4,
        )
        assert torch.allclose(got, expected, atol=1e-6)
    target.mkdir(parents=True)
    save_file(out, str(target / "model.safetensors"), metadata={"format": "pt"})
    config = json.loads((source / "config.json").read_text())
    config["quantization_config"] = {
        "quant_method": "gptq",
        "bits": 4,
        "group_size": group_size,
        "desc_act": False,
        "sym": True,
        "format": "gptq",
        "checkpoint_format": "gptq",
    }
    (target / "config.json").write_text(json.dumps(config))
    for file in source.iterdir():
        if file.name.startswith("tokenizer") or file.suffix == ".jinja":
            (target / file.name).write_bytes(file.read_bytes())
    return target


@pytest.mark.slow
def test_evaluate_side_by_side(
    eval_settings,
    tiny_llama: Path,
    golden_dir: Path,
    preference_dir: Path,
    chunk_collection,
    fake_judge,
    bundled_models_dir: Path,
    tmp_path: Path,
    monkeypatch,
) -> None:
    url, requests = fake_judge
    monkeypatch.setattr(eval_settings, "judge_url", url)
    monkeypatch.setattr(eval_settings, "judge_model", "fake-judge")
    gptq = _rtn_gptq_folder(tiny_llama, tmp_path / "gptq")
    job = EvaluationJob(
        models=[ModelSpec(name="base", path=str(tiny_llama)), ModelSpec(name="gptq", path=str(gptq))],
        golden=str(golden_dir),
        preference=str(preference_dir),
        reranker_path=str(bundled_models_dir / "all-minilm-l6-v2"),
        max_new_tokens=8,
        retrieval_k=1,
        rerank_candidates=5,
    )
    report = evaluate(job, eval_settings)

    assert [m.name for m in report.models] == ["base", "gptq"]
    for scores in report.models:
        for metric in (
            "golden_perplexity",
            "golden_answer_cosine",
            "golden_rouge_l",
            "golden_style_score",
            "golden_judge_accuracy",
            "golden_judge_style",
        ):
            assert metric in scores.metrics and metric in scores.intervals, metric
            low, high = scores.intervals[metric]
            assert low <= scores.metrics[metric] <= high, metric
        assert scores.metrics["golden_judge_accuracy"] == 3.0 and scores.metrics["golden_judge_style"] == 2.0
        assert scores.mlflow_run_id and scores.seconds is not None and scores.seconds > 0
    base, gptq = report.models
    # The GPTQ model is scored on its own int4 kernels; the float copy only checks them.
    assert base.backend == "float" and gptq.backend == "gptq-kernels"
    assert any("GPTQ kernels and the dequantized copy agree" in note for note in gptq.notes), gptq.notes
    # RTN 4-bit of the same random model: close to, but not exactly, the base perplexity.
    ratio = gptq.metrics["golden_perplexity"] / base.metrics["golden_perplexity"]
    assert ratio != 1.0 and abs(ratio - 1) < 0.5
    assert len(requests) == 2 * report.answered == 8 and report.questions == 4
    cosine, reranker = report.retrieval
    assert (cosine.name, reranker.name) == ("cosine", "reranker")
    assert cosine.metrics["golden_hit_at_1"] == 1.0 and len(reranker.per_question["golden_mrr"]) == 4
    assert report.judge.startswith("used fake-judge")

    folder = Path(report.report_dir)
    assert folder.parent == eval_settings.reports_dir / "evaluation"
    html = (folder / "table.html").read_text()
    assert "<table id='comparison'>" in html and "<table id='retrieval'>" in html and ">gptq<" in html
    table = (folder / "table.md").read_text()
    assert "| base |" in table and "| cosine |" in table and "95% bootstrap interval" in table
    low, high = base.intervals["golden_rouge_l"]
    assert f"[{low:.3g}, {high:.3g}]" in table
    assert (folder / "golden_perplexity.png").read_bytes()[:4] == b"\x89PNG"
    assert (folder / "golden_mrr.png").exists() and (folder / "answers" / "gptq.jsonl").exists()
    assert json.loads((folder / "report.json").read_text())["mlflow_run_id"] == report.mlflow_run_id

    from mlflow import MlflowClient

    client = MlflowClient(eval_settings.mlflow_tracking_uri)
    children = client.search_runs(
        [client.get_run(report.mlflow_run_id).info.experiment_id],
        filter_string=f"tags.mlflow.parentRunId = '{report.mlflow_run_id}'",
    )
    names = sorted(run.data.tags.get("model_name") or run.data.tags["ranker_name"] for run in children)
    assert names == ["base", "cosine", "gptq", "reranker"]
    gptq_run = next(run for run in children if run.data.tags.get("model_name") == "gptq")
    assert gptq_run.data.tags["backend"] == "gptq-kernels"
    assert {"golden_perplexity", "golden_perplexity_ci_low", "golden_perplexity_ci_high"} <= set(
        gptq_run.data.metrics
    )
    artifacts = {item.path for item in client.list_artifacts(report.mlflow_run_id, "report")}
    assert {"report/table.html", "report/table.md", "report/golden_perplexity.png"} <= artifacts


@pytest.mark.slow
def test_evaluate_says_what_it_skipped(
    eval_settings, tiny_llama: Path, golden_dir: Path, tmp_path: Path
) -> None:
    job = EvaluationJob(
        models=[ModelSpec(name="base", path=str(tiny_llama))],
        golden=str(golden_dir),
        preference=None,
        max_questions=2,
        max_new_tokens=4,
        track=False,
        output_dir=tmp_path / "report",
    )
    report = evaluate(job, eval_settings)
    assert report.judge == "skipped: TWINOPS_JUDGE_URL is not set"
    assert any(item.startswith("style score") for item in report.skipped)
    assert any(item.startswith("retrieval: no `twin_chunks`") for item in report.skipped)
    assert "golden_style_score" not in report.models[0].metrics and report.mlflow_run_id is None
    assert report.answered == 2 and report.questions == 4  # perplexity still reads every reference
    assert "LLM judge: skipped" in (tmp_path / "report" / "table.md").read_text()


def test_golden_by_version_in_mongodb(mongo_settings, golden_dir: Path) -> None:
    from twinops.domain.versions import DatasetKind, DatasetVersion
    from twinops.infra.dataset_versions import DatasetVersionRepository
    from twinops.infra.mongo import connect

    version = DatasetVersion(kind=DatasetKind.GOLDEN, name="golden", inputs_hash="h", uri=str(golden_dir))
    DatasetVersionRepository(connect(mongo_settings)).save(version)
    rows, label = load_golden("latest", mongo_settings, limit=2)
    assert label == version.id and len(rows) == 2 and rows[0].chunk_id
    assert load_golden(version.id, mongo_settings, limit=10)[0][3].instruction.startswith("What does GPTQ")
    with pytest.raises(NotFound, match="does not exist"):
        load_golden("golden-0000000000000000", mongo_settings, limit=2)


def test_cli_bad_inputs_are_one_line(eval_settings, tiny_llama: Path, golden_dir: Path, capsys) -> None:
    assert main(["evaluate", "--model", "no-equals-sign", "--golden", str(golden_dir)]) == 2
    assert "is not NAME=PATH" in capsys.readouterr().err
    assert main(["evaluate", "--model", "x=/no/such/model", "--golden", str(golden_dir)]) == 2
    assert "neither a folder nor a Hugging Face id" in capsys.readouterr().err
    assert main(["evaluate", "--model", f"base={tiny_llama}", "--golden", str(golden_dir / "missing")]) == 2
    assert "golden dataset folder" in capsys.readouterr().err
