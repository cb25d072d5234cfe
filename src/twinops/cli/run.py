"""``twinops run``: the whole local FTI loop that ``make run`` calls.

Services up, bundled models cached, then ``twin_pipeline`` (feature pipeline, then training
pipeline) through ``kfp.local`` with the parameters of ``configs/run/local.yaml``. It ends by
printing where a person should look next. Then it releases and serves: the model servers start
(LLM, reranker while it holds ``champion``, RAG), and when the gate nominated a new twin
(``twin-llm@challenger``) it is served as a canary behind the local router, which RAG calls, and
released as on a cluster (``twinops.rollout.runner.release_challenger``: a short canary scored on the
golden set; promoted, it takes ``champion``; rolled back, it is tagged rejected). Then it asks the
twin the config's ``ask`` question about the ingested corpus, prints which version answered and
why, the grounded answer with its sources, and stops the servers.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from twinops.cli.common import JSON_HELP, VERBOSE_HELP, console, err_console, print_json, print_run_summary
from twinops.cli.pipeline import run_pipeline_locally
from twinops.cli.serve import print_answer, reranker_args
from twinops.errors import ConfigError
from twinops.infra.config_files import read_yaml_mapping
from twinops.models.bundled import pull_all
from twinops.pipelines.params import parse_pairs
from twinops.services.manager import ServiceManager
from twinops.settings import get_settings

DEFAULT_CONFIG = Path("configs/run/local.yaml")
ASK_KEY = "ask"  # the run config's question for the served twin; not a pipeline parameter


def _load_params(config: Path | None, overrides: list[str] | None) -> tuple[dict[str, str], str | None]:
    """Pipeline parameters as the strings ``run_local`` converts (the YAML first, then ``--param``),
    and the question to ask the served twin at the end."""
    path = config or (DEFAULT_CONFIG if DEFAULT_CONFIG.exists() else None)
    params: dict[str, Any] = {}
    if path is not None:
        params = read_yaml_mapping(path, what="run config", shape="a mapping of parameter names to values")
    question = params.pop(ASK_KEY, None)
    if question is not None and not isinstance(question, str):
        raise ConfigError(f"run config {path}: `{ASK_KEY}` must be a question (a string)")
    as_strings = {
        key: value if isinstance(value, str) else json.dumps(value) for key, value in params.items()
    }
    return {**as_strings, **parse_pairs(overrides)}, question


def run(
    config: Annotated[
        Path | None,
        typer.Option("--config", help="YAML of twin_pipeline parameters (default configs/run/local.yaml)."),
    ] = None,
    param: Annotated[
        list[str] | None, typer.Option("--param", "-p", help="Override one parameter: key=value.")
    ] = None,
    *,
    ask: Annotated[
        str | None, typer.Option("--ask", help="Question for the served twin (default: the config's `ask`).")
    ] = None,
    serve: Annotated[
        bool, typer.Option("--serve/--no-serve", help="Serve the twin at the end and ask it the question.")
    ] = True,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help=VERBOSE_HELP)] = False,
    as_json: Annotated[bool, typer.Option("--json", help=JSON_HELP)] = False,
) -> None:
    """Run the whole local FTI loop: services up, models pull, then twin_pipeline via kfp.local.

    One line per step (duration, key figures); each step's full log goes to
    TWINOPS_HOME/logs/<run>/ (--verbose streams them). At the end: the evaluation table, the
    registry's decisions, where MLflow and the reports are, and the served twin's answer to the
    config's `ask` question with its sources.
    """
    from twinops.pipelines.params import coerce
    from twinops.pipelines.registry import get_pipeline

    settings = get_settings()
    params, configured_question = _load_params(config, param)
    question = ask or configured_question
    coerce(get_pipeline("twin_pipeline", target="local"), params)  # bad params fail before any work
    with err_console.status("caching bundled models"):
        models = pull_all(settings)
    err_console.rule("twin_pipeline (kfp.local): feature pipeline, then training pipeline")
    # run_local starts the embedded services itself (before the first task).
    result = run_pipeline_locally("twin_pipeline", params, settings, verbose=verbose)
    services = ServiceManager(settings).status()
    summary = {
        "home": str(settings.home),
        "services": {name: record.uri for name, record in services.items()},
        "models": {model.name: str(model.path) for model in models},
        "pipeline": result.model_dump(mode="json"),
    }
    not_served = _not_served(params.get("author"))
    release, reply = (
        _release_and_ask(settings, question) if serve and question and not not_served else (None, None)
    )
    if as_json:
        print_json({**summary, "release": release, "answer": reply, "not_served": not_served})
        return
    print_run_summary(result)
    console.print(f"{'TWINOPS_HOME:':<20}{settings.home}", markup=False, highlight=False)
    console.print("stop the services with `twinops services down`", markup=False)

    if serve and not_served:
        console.print(not_served, markup=False, highlight=False)
    if release is not None:
        _print_release(release)
    if reply is not None:
        console.rule(f"the twin answers: {question}")
        print_answer(reply)


def _not_served(author: str | None) -> str | None:
    """Why the run's twin is not released and served at the end, or None when it is: the local
    release and the servers `twinops run` starts are the default author's (twin-llm)."""
    from twinops.domain.twins import twin_model_name
    from twinops.infra.registry import LLM_MODEL

    twin = twin_model_name(author)
    if twin == LLM_MODEL:
        return None
    return (
        f"not served: `twinops run` releases and serves the default author's twin ({LLM_MODEL}) at "
        f"the end; {twin} is registered with the gate's decision above"
    )


def _release_and_ask(settings, question: str):
    """Start the servers as `twinops serve all` does (the gate's nominee as the router's canary),
    release the nominee, ask ``question``, stop them. Returns (the release, the answer)."""
    from twinops.infra.registry import CHALLENGER, LLM_MODEL, alias_or_none, champion_or_none
    from twinops.rollout.runner import LocalRelease, release_challenger
    from twinops.serving.local import LocalServers, ask_rag

    challenger = alias_or_none(LLM_MODEL, CHALLENGER, settings)
    champion = champion_or_none(LLM_MODEL, settings)
    stable = (
        f"{LLM_MODEL} v{champion.version} (champion)"
        if champion
        else f"the base model ({settings.base_model})"
    )
    # Starting, releasing and stopping show on a spinner; what stays is the answer and the
    # release's decisions (the servers' logs are under TWINOPS_HOME/logs/serve).
    with (
        err_console.status("serving the twin") as status,
        LocalServers(settings, on_event=status.update) as servers,
    ):
        servers.start_all(
            reranker_args=reranker_args(None),
            canary_dir=Path(challenger.model_dir) if challenger is not None else None,
        )
        if challenger is not None:
            status.update(f"releasing {LLM_MODEL} v{challenger.version}: a canary on the local router")
            release = release_challenger(
                settings,
                router_url=servers.servers["router"].url,
                stable_label=stable,
                on_event=status.update,
            )
        else:
            release = LocalRelease(
                serving=f"{stable}: the gate nominated no new version (see `twinops registry list`)"
            )
        status.update(f"asking twin-rag at {servers.servers['rag'].url}")
        return release.model_dump(mode="json"), ask_rag(servers.servers["rag"].openai_url, question)


def _print_release(release: dict) -> None:
    console.rule("release")
    state = release.get("state")
    if state is not None:
        for decision in state["decisions"]:
            reasons = "; ".join(decision["reasons"])
            console.print(
                f"  {decision['action']:<9} {decision['percent']:>3}%  {reasons}",
                markup=False,
                highlight=False,
            )
    console.print(f"serving: {release['serving']}", markup=False, highlight=False)
