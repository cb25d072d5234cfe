"""``twinops evaluate``: base, SFT, DPO and GPTQ side by side on the golden set."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from twinops.cli.common import JSON_HELP, console, err_console, print_json

if TYPE_CHECKING:
    from twinops.evaluation import ModelSpec
    from twinops.settings import Settings

TRAINED_STAGES = ("sft", "dpo", "gptq")  # scored beside the base model, in this order


def default_models(settings: Settings) -> tuple[list[ModelSpec], str]:
    """The models ``twinops evaluate`` scores without ``--model``, and where they came from.

    The base model, then the newest finished SFT, DPO and GPTQ runs under TWINOPS_HOME; with no
    run at all, the registry's ``champion`` and ``challenger`` of twin-llm.
    """
    from twinops.errors import NotFound, TwinopsError
    from twinops.evaluation import ModelSpec
    from twinops.infra.registry import CHALLENGER, CHAMPION, LLM_MODEL, MODELS_SCHEME, resolve_model_uri
    from twinops.infra.runs import latest_model, runs_dir

    base = ModelSpec(name="base", path=settings.base_model)
    trained = [(stage, latest_model(stage, settings)) for stage in TRAINED_STAGES]
    runs = [ModelSpec(name=stage, path=str(path)) for stage, path in trained if path is not None]
    if runs:
        return [base, *runs], f"the base model and the latest runs under {runs_dir(settings)}"
    registered = []
    for alias in (CHAMPION, CHALLENGER):
        try:
            found = resolve_model_uri(f"{MODELS_SCHEME}{LLM_MODEL}@{alias}", settings, setting="--model")
        except TwinopsError:
            continue  # not registered, no such alias, or no registry at all: no such model
        if all(spec.path != found.model_dir for spec in registered):
            registered.append(ModelSpec(name=alias, path=found.model_dir))
    if registered:
        return [
            base,
            *registered,
        ], f"the base model and {LLM_MODEL}'s {' and '.join(s.name for s in registered)}"
    raise NotFound(
        f"no trained model to evaluate: no SFT, DPO or GPTQ run under {runs_dir(settings)} and no "
        f"registered {LLM_MODEL}; train one (`twinops train sft`) or pass --model NAME=PATH"
    )


def evaluate(
    *,
    model: Annotated[
        list[str] | None,
        typer.Option(
            "--model",
            help="NAME=PATH, repeatable: e.g. --model base=bundled:smollm2-135m-instruct "
            "--model sft=runs/sft/r1/merged. Default: the base model and the latest SFT, DPO and GPTQ "
            "runs (without runs: the registry's champion and challenger).",
        ),
    ] = None,
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
        str | None,
        typer.Option(
            "--reranker", help="CrossEncoder folder for reranked retrieval; default: the latest reranker run."
        ),
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
    from twinops.infra.runs import latest_model
    from twinops.settings import get_settings

    settings = get_settings()
    if model:
        models = [ModelSpec.parse(item) for item in model]
    else:
        models, origin = default_models(settings)
        listed = ", ".join(f"{spec.name}={spec.path}" for spec in models)
        err_console.print(
            f"evaluating {listed} ({origin}; choose with --model NAME=PATH)", highlight=False, soft_wrap=True
        )
    if reranker is None and not no_retrieval:
        latest_reranker = latest_model("reranker", settings)
        reranker = str(latest_reranker) if latest_reranker else None
    job = EvaluationJob(
        models=models,
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
        report = run_evaluation(job, settings, step=lambda text: status.update(f"evaluating: {text}"))
    if as_json:
        print_json(report)
        return
    from rich.markdown import Markdown

    console.print(Markdown(Path(report.files["table.md"]).read_text()))
    console.print(f"report: {report.files['table.html']}")
