"""``twinops evaluate``: base, SFT, DPO and GPTQ side by side on the golden set."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from twinops.cli.common import JSON_HELP, console, err_console, print_json


def evaluate(
    *,
    model: Annotated[
        list[str],
        typer.Option(
            "--model",
            help="NAME=PATH, repeatable: e.g. --model base=bundled:smollm2-135m-instruct "
            "--model sft=runs/sft/r1/merged.",
        ),
    ],
    golden: Annotated[
        str, typer.Option("--golden", help="Golden DatasetVersion id, 'latest', or a dataset folder.")
    ] = "latest",
    preference: Annotated[
        str,
        typer.Option(
            "--preference", help="Preference set for the style classifier (id, 'latest', folder, 'none')."
        ),
    ] = "latest",
    reranker: Annotated[
        str | None, typer.Option("--reranker", help="CrossEncoder folder for reranked retrieval.")
    ] = None,
    questions: Annotated[
        int, typer.Option("--questions", help="Golden questions used (generation dominates).")
    ] = 16,
    max_new_tokens: Annotated[
        int, typer.Option("--max-new-tokens", help="Tokens per generated answer.")
    ] = 64,
    no_retrieval: Annotated[
        bool, typer.Option("--no-retrieval", help="Skip hit@k/MRR against Qdrant.")
    ] = False,
    no_judge: Annotated[
        bool, typer.Option("--no-judge", help="Skip the LLM judge even when configured.")
    ] = False,
    no_track: Annotated[bool, typer.Option("--no-track", help="Do not log MLflow runs.")] = False,
    output: Annotated[
        Path | None, typer.Option("--output", help="Report folder; default reports/evaluation/<time>.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help=JSON_HELP)] = False,
) -> None:
    """Score each model on the golden set and write a comparison table (HTML, Markdown) and plots.

    Per model: perplexity on held-out author text, answer cosine (MiniLM) and ROUGE-L to the
    author's reference, a style score (a classifier of author vs. base-model text trained on the
    preference set), and LLM-judge accuracy/style 1-3 when TWINOPS_JUDGE_URL and TWINOPS_JUDGE_MODEL
    are set. Once: retrieval hit@k and MRR of the golden questions in Qdrant, with and without
    --reranker. One MLflow run per model, nested in a comparison run with the table and plots.
    """
    from twinops.evaluation import EvaluationJob, ModelSpec
    from twinops.evaluation.evaluate import evaluate as run_evaluation
    from twinops.settings import get_settings

    job = EvaluationJob(
        models=[ModelSpec.parse(item) for item in model],
        golden=golden,
        preference=None if preference.lower() == "none" else preference,
        reranker_path=reranker,
        max_questions=questions,
        max_new_tokens=max_new_tokens,
        retrieval=not no_retrieval,
        judge=not no_judge,
        track=not no_track,
        output_dir=output,
    )
    with err_console.status("evaluating") as status:
        report = run_evaluation(job, get_settings(), step=lambda text: status.update(f"evaluating: {text}"))
    if as_json:
        print_json(report)
        return
    from rich.markdown import Markdown

    console.print(Markdown(Path(report.files["table.md"]).read_text()))
    console.print(f"report: {report.files['table.html']}")
