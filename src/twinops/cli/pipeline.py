"""``twinops pipeline``: compile, run locally and submit the Kubeflow pipelines."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from twinops.cli.common import (
    JSON_HELP,
    VERBOSE_HELP,
    console,
    err_console,
    pipeline_steps,
    print_json,
    print_run_summary,
    print_step_failure,
)
from twinops.settings import get_settings

if TYPE_CHECKING:
    from twinops.pipelines.local import LocalRunResult
    from twinops.settings import Settings

app = typer.Typer(
    help=(
        "Kubeflow Pipelines: feature_pipeline (ingest → gate → embed → materialize), "
        "training_pipeline (datasets → SFT → DPO → quantize → evaluate → register, plus the reranker) "
        "and twin_pipeline (both). Compile them to YAML for the Kubeflow UI, run them on this "
        "machine with kfp.local, or submit them to a cluster."
    ),
    no_args_is_help=True,
)

PARAM_HELP = "A pipeline parameter as key=value (repeatable); lists take JSON or a,b,c; dicts take JSON."
NAME_HELP = "feature_pipeline, training_pipeline or twin_pipeline (also: feature, training, twin)."
JsonFlag = Annotated[bool, typer.Option("--json", help=JSON_HELP)]
Params = Annotated[list[str] | None, typer.Option("--param", "-p", help=PARAM_HELP)]


@app.command("list")
def list_pipelines(as_json: JsonFlag = False) -> None:
    """List the pipelines and their parameters with defaults."""
    from twinops.pipelines.params import describe
    from twinops.pipelines.registry import get_pipeline, pipeline_names

    catalog = {name: describe(get_pipeline(name)) for name in pipeline_names()}
    if as_json:
        print_json(catalog)
        return
    for name, parameters in catalog.items():
        console.print(f"[bold]{name}[/]")
        for parameter, info in parameters.items():
            console.print(f"  {parameter}: {info['type']} = {info['default']!r}", highlight=False)


@app.command("compile")
def compile_command(
    output_dir: Annotated[Path, typer.Option("--output-dir", help="Where the YAML goes.")] = Path(
        "pipelines/compiled"
    ),
    name: Annotated[
        list[str] | None, typer.Option("--name", help="Only this pipeline (repeatable); default all.")
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Compile the pipelines to KFP IR YAML (uploadable in the Kubeflow Pipelines UI)."""
    from twinops.pipelines.compile import compile_all

    paths = compile_all(output_dir, list(name) if name else None)
    if as_json:
        print_json({"compiled": [str(path) for path in paths]})
        return
    for path in paths:
        console.print(f"compiled {path}")


@app.command("docs")
def docs_command(
    components_dir: Annotated[Path, typer.Option("--components-dir", help="The components tree.")] = Path(
        "components"
    ),
    check: Annotated[
        bool, typer.Option("--check", help="Only report stale READMEs (exit 1 if any).")
    ] = False,
) -> None:
    """Generate components/<name>/README.md from each component's docstring."""
    from twinops.pipelines.docs import stale_readmes, write_readmes

    if check:
        stale = stale_readmes(components_dir)
        for path in stale:
            err_console.print(f"stale: {path} (run `twinops pipeline docs`)")
        raise typer.Exit(1 if stale else 0)
    for path in write_readmes(components_dir):
        console.print(f"wrote {path}")


def run_command(
    name: Annotated[str, typer.Argument(help=NAME_HELP)],
    param: Params = None,
    *,
    cache: Annotated[bool, typer.Option("--cache", help="Reuse outputs of identical earlier tasks.")] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help=VERBOSE_HELP)] = False,
    as_json: JsonFlag = False,
) -> None:
    """Run a pipeline on this machine with kfp.local and the embedded services.

    Tasks run one at a time as subprocesses. Each prints one line when it ends (duration and key
    figures); its full log goes to TWINOPS_HOME/logs/<run>/<step>.log (--verbose streams them).
    Outputs land under TWINOPS_HOME/kfp (KFP artifacts) and TWINOPS_HOME (features, datasets,
    runs, MLflow). A failed step exits 1 with the end of its log.
    """
    from twinops.pipelines.params import parse_pairs

    result = run_pipeline_locally(name, parse_pairs(param), get_settings(), cache=cache, verbose=verbose)
    if as_json:
        print_json(result)
        return
    print_run_summary(result)
    console.print(f"{'output:':<20}{result.output}", markup=False, highlight=False)


app.command("run")(run_command)
# The name this command had before `run`; kept so existing scripts keep working.
app.command("run-local", hidden=True)(run_command)


def run_pipeline_locally(
    name: str, params: dict[str, str], settings: Settings, *, cache: bool = False, verbose: bool = False
) -> LocalRunResult:
    """``run_local`` with one line per step on stderr; on failure, the step's log tail first."""
    from twinops.pipelines.local import PipelineRunFailed, run_local

    try:
        with pipeline_steps(verbose=verbose) as on_event:
            return run_local(name, params, settings, enable_caching=cache, on_event=on_event, echo=verbose)
    except PipelineRunFailed as error:
        print_step_failure(error)
        raise


@app.command("submit")
def submit_command(
    name: Annotated[str, typer.Argument(help=NAME_HELP)],
    host: Annotated[
        str, typer.Option("--host", help="Kubeflow Pipelines API URL, e.g. http://localhost:8080.")
    ],
    *,
    experiment: Annotated[
        str, typer.Option("--experiment", help="Experiment to run in (created if new).")
    ] = ("twinops"),
    schedule: Annotated[
        str | None, typer.Option("--schedule", help="Cron (5 or 6 fields): a recurring run instead.")
    ] = None,
    param: Params = None,
    secret: Annotated[
        str | None, typer.Option("--secret", help="Kubernetes Secret with credentials (twinops-secrets).")
    ] = None,
    pvc: Annotated[str | None, typer.Option("--pvc", help="PVC holding TWINOPS_HOME (twinops-home).")] = None,
    namespace: Annotated[
        str | None,
        typer.Option(
            "--namespace",
            "-n",
            help="Profile namespace of a multi-user Kubeflow (default: TWINOPS_NAMESPACE, else the "
            "kubeconfig context's); standalone KFP runs in its own namespace and takes none.",
        ),
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Upload the pipeline as a new version and start a run, or a recurring run with --schedule.

    The run's namespace must hold the ConfigMap twinops-env, the PVC twinops-home (--pvc) and the
    Secret twinops-secrets (--secret): the chart or a kustomize overlay installed there creates the
    first two (docs/cluster.md)."""
    from twinops.pipelines.params import parse_pairs
    from twinops.pipelines.submit import submit

    result = submit(
        name,
        host,
        raw_params=parse_pairs(param),
        experiment=experiment,
        schedule=schedule,
        secret=secret,
        pvc=pvc,
        namespace=namespace,
        configured_namespace=get_settings().namespace,
    )
    if as_json:
        print_json(result)
        return
    what = (
        f"recurring run {result.recurring_run_id} ({result.schedule})"
        if result.schedule
        else f"run {result.run_id}"
    )
    where = f"namespace {result.namespace}" if result.namespace else "Kubeflow Pipelines' own namespace"
    console.print(
        f"{result.pipeline} version {result.version_id}: {what} at {result.host}, in {where}", highlight=False
    )
