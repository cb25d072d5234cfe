"""``twinops drift report|fit|serve``: drift against what the champion was trained on."""

from __future__ import annotations

from datetime import timedelta
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from twinops.cli.common import JSON_HELP, console, err_console, print_json
from twinops.errors import ConfigError
from twinops.settings import get_settings

app = typer.Typer(
    help=(
        "Drift: offline reports (evidently) and the online detector fed by KServe's logger.\n\n"
        "--reference is `latest` (the champion of twin-llm), a twin-llm version number, or a dataset "
        "version id; its detectors are fitted once and saved beside the model version."
    ),
    no_args_is_help=True,
)

REFERENCE_HELP = "latest (twin-llm's champion), a twin-llm version number, or a dataset version id."
CONFIG_HELP = "Drift config YAML (configs/drift/default.yaml); flags below override it."
DEFAULT_PORT = 8580


class Backend(StrEnum):
    evidently = "evidently"
    alibi = "alibi"
    both = "both"


class Retrain(StrEnum):
    off = "off"
    local = "local"
    kfp = "kfp"


def report(
    *,
    current: Annotated[
        str,
        typer.Option(
            "--current", help="JSONL of texts, `requests` (the request log) or a dataset version id."
        ),
    ],
    reference: Annotated[str, typer.Option("--reference", help=REFERENCE_HELP)] = "latest",
    config: Annotated[Path | None, typer.Option("--config", help=CONFIG_HELP)] = None,
    out: Annotated[Path | None, typer.Option("--out", help="Folder for report.html/report.json.")] = None,
    mlflow: Annotated[bool, typer.Option("--mlflow/--no-mlflow", help="Log the report to MLflow.")] = True,
    as_json: Annotated[bool, typer.Option("--json", help=JSON_HELP)] = False,
) -> None:
    """Embedding and feature drift of --current against --reference: HTML, JSON and an MLflow run."""
    from twinops.features.embedding import open_embedder
    from twinops.monitoring.config import load_drift_config
    from twinops.monitoring.reference import open_reference, resolve_reference
    from twinops.monitoring.report import load_current, run_drift_report

    settings = get_settings()
    drift_config = load_drift_config(config)
    with err_console.status("reading the reference and the current data"):
        data = resolve_reference(settings, reference)
        current_data = load_current(settings, current, limit=drift_config.max_reference)
    with err_console.status("embedding and fitting the reference (once per reference)"):
        embedder = open_embedder(settings)
        fitted = open_reference(settings, data, embedder, drift_config)
    with err_console.status("testing for drift"):
        summary = run_drift_report(
            settings, fitted, current_data, embedder, drift_config, out_dir=out, log_mlflow=mlflow
        )
    if as_json:
        print_json(summary)
        return
    verdict = "[red]DRIFT[/]" if summary.drift else "[green]no drift[/]"
    console.print(f"{verdict}: {summary.current} against {summary.reference} ({summary.reference_id})")
    for space in summary.spaces:
        console.print(f"  {space.space} ({space.tested} of {space.current_texts} texts tested):")
        for r in space.results:
            p_val = "n/a" if r.p_val is None else f"{r.p_val:.3f}"
            flag = "drift" if r.is_drift else "ok"
            console.print(
                f"    {r.detector:<20} distance {r.distance:<10.4g} p {p_val:<7} {flag}", markup=False
            )
    for feature in summary.features:
        drifted = [c.column for c in feature.columns if c.drifted]
        console.print(
            f"  {feature.table} features: {feature.drifted_columns} of {len(feature.columns)} columns drifted"
            + (f" ({', '.join(drifted)})" if drifted else ""),
            markup=False,
        )
    for path in summary.html:
        console.print(f"  report: {path}", markup=False)
    if summary.mlflow_run_id:
        console.print(f"  MLflow run: {summary.mlflow_run_id}", markup=False)


def fit(
    *,
    reference: Annotated[str, typer.Option("--reference", help=REFERENCE_HELP)] = "latest",
    config: Annotated[Path | None, typer.Option("--config", help=CONFIG_HELP)] = None,
    backend: Annotated[
        Backend, typer.Option("--backend", help="alibi/both need .venv-drift.")
    ] = Backend.evidently,
    as_json: Annotated[bool, typer.Option("--json", help=JSON_HELP)] = False,
) -> None:
    """Fit the reference's detectors and save them beside the model version (training runs this)."""
    from twinops.monitoring.config import load_drift_config
    from twinops.monitoring.fit import fit_reference

    settings = get_settings()
    with err_console.status("embedding the reference and fitting its detectors"):
        fitted, detectors = fit_reference(
            settings, reference, load_drift_config(config), backend=backend.value
        )
    summary = {
        "reference_id": fitted.id,
        "reference": fitted.info.label,
        "folder": str(fitted.folder),
        "spaces": fitted.info.spaces,
        "detectors": {space: [d.name for d in found.detectors] for space, found in detectors.items()},
    }
    if as_json:
        print_json(summary)
        return
    console.print(f"fitted {fitted.id} ({fitted.info.label}) in {fitted.folder}", markup=False)
    for space, names in summary["detectors"].items():
        console.print(f"  {space}: {fitted.info.spaces[space]} texts; {', '.join(names)}", markup=False)


def _runner(retrain: Retrain, *, pipeline: str, params_file: Path | None, kfp_host: str | None):
    """The pipeline runner the retraining trigger calls (None: no retraining)."""
    if retrain == Retrain.off:
        return None
    from twinops.cli.run import _load_params
    from twinops.monitoring.retrain import DATASET_OPTIONS, with_new_data
    from twinops.pipelines.registry import canonical_name, get_pipeline

    params, _question = _load_params(params_file, None)
    settings = get_settings()
    pipeline = canonical_name(pipeline)
    inputs = get_pipeline(pipeline).component_spec.inputs or {}
    if DATASET_OPTIONS not in inputs:
        raise ConfigError(
            f"--pipeline {pipeline} builds no datasets, so the drifted texts would not reach it: "
            "pass twin_pipeline or training_pipeline",
            setting="--pipeline",
        )
    defaults = {"default_options": inputs[DATASET_OPTIONS].default or {}}
    if retrain == Retrain.kfp:
        if not kfp_host:
            raise ConfigError("--retrain kfp needs --kfp-host https://KFP-HOST")
        from twinops.pipelines.submit import submit

        return lambda request: (
            submit(
                pipeline, kfp_host, raw_params=with_new_data(params, request, settings.home, **defaults)
            ).run_id
            or ""
        )
    from twinops.pipelines.local import run_local

    return lambda request: (
        run_local(pipeline, with_new_data(params, request, settings.home, **defaults), settings).run_dir or ""
    )


def serve(
    *,
    reference: Annotated[str, typer.Option("--reference", help=REFERENCE_HELP)] = "latest",
    port: Annotated[int, typer.Option("--port", help="HTTP port.")] = DEFAULT_PORT,
    host: Annotated[
        str, typer.Option("--host", help="Address to listen on (0.0.0.0 in a pod).")
    ] = "127.0.0.1",
    batch_size: Annotated[
        int | None, typer.Option("--batch-size", min=2, help="Texts per test (Seldon's drift batch size).")
    ] = None,
    backend: Annotated[
        Backend, typer.Option("--backend", help="alibi/both need .venv-drift.")
    ] = Backend.evidently,
    reply_url: Annotated[
        str | None,
        typer.Option("--reply-url", help="Post every verdict there as a CloudEvent (e.g. K_SINK)."),
    ] = None,
    webhook_url: Annotated[
        str | None, typer.Option("--webhook-url", help="Post drift verdicts there as JSON.")
    ] = None,
    event_type: Annotated[
        str, typer.Option("--event-type", help="ce-type of the verdict events.")
    ] = "org.twinops.drift",
    retrain: Annotated[
        Retrain,
        typer.Option("--retrain", help="On drift start twin_pipeline: off, local (kfp.local) or kfp."),
    ] = Retrain.off,
    pipeline: Annotated[
        str, typer.Option("--pipeline", help="Pipeline the trigger starts.")
    ] = "twin_pipeline",
    params: Annotated[
        Path | None,
        typer.Option("--params", help="Pipeline parameters YAML (default configs/run/local.yaml)."),
    ] = None,
    kfp_host: Annotated[
        str | None, typer.Option("--kfp-host", help="With --retrain kfp: the KFP API.")
    ] = None,
    cooldown: Annotated[
        float | None,
        typer.Option("--cooldown", min=0, help="Seconds between two retrainings started by drift."),
    ] = None,
    verdict_in_reply: Annotated[
        bool | None,
        typer.Option(
            "--verdict-in-reply/--answer-at-once",
            help="Answer a batch's last event with its verdict, as Seldon's detector server does (the "
            "sender waits for the test), or at once with a 202 (the default: the verdict goes to "
            "/metrics, --reply-url, --webhook-url and the retraining).",
            show_default=False,
        ),
    ] = None,
    config: Annotated[Path | None, typer.Option("--config", help=CONFIG_HELP)] = None,
) -> None:
    """The online detector: CloudEvents from KServe's logger on POST /, Prometheus on /metrics."""
    import uvicorn

    from twinops.features.embedding import open_embedder
    from twinops.monitoring.config import load_drift_config
    from twinops.monitoring.fit import fit_reference
    from twinops.monitoring.isolation import DetectorsProcess
    from twinops.monitoring.retrain import RetrainTrigger
    from twinops.monitoring.service import DriftDetector, create_app
    from twinops.services.process import port_in_use

    settings = get_settings()
    drift_config = load_drift_config(
        config, batch_size=batch_size, cooldown_seconds=cooldown, verdict_in_reply=verdict_in_reply
    )
    if port_in_use(port):
        raise ConfigError(f"port {port} is in use: pass a free --port", setting="--port")
    runner = _runner(retrain, pipeline=pipeline, params_file=params, kfp_host=kfp_host)
    _wait_for_reference(settings, reference, host=host, port=port)
    embedder = open_embedder(settings)
    with err_console.status("loading (or fitting) the reference detectors"):
        fitted, detectors = fit_reference(
            settings, reference, drift_config, embedder=embedder, backend=backend.value
        )
    trigger = (
        RetrainTrigger(
            runner, cooldown=timedelta(seconds=drift_config.cooldown_seconds), folder=settings.home / "drift"
        )
        if runner
        else None
    )
    with err_console.status("starting the detectors' process"):
        detectors_process = DetectorsProcess(detectors)
    with detectors_process:
        detector = DriftDetector(
            detectors,
            lambda texts: embedder.encode(texts, batch_size=drift_config.embed_batch_size),
            batch_size=drift_config.batch_size,
            reference_id=fitted.id,
            reply_url=reply_url,
            webhook_url=webhook_url,
            event_type=event_type,
            trigger=trigger,
            limits=drift_config.events,
            detectors_process=detectors_process,
            verdict_in_reply=drift_config.verdict_in_reply,
        )
        err_console.print(
            f"drift detector on http://{host}:{port}/ (reference {fitted.id}, {fitted.info.label}; "
            f"spaces {', '.join(detectors)}; batch {drift_config.batch_size}); Ctrl-C stops it",
            markup=False,
        )
        # No access log: a line per logged inference event, and its arguments built at every event
        # even when the level hides it; the counters on /metrics say what came in.
        uvicorn.run(create_app(detector), host=host, port=port, log_level="warning", access_log=False)


def _wait_for_reference(settings, reference: str, *, host: str, port: int) -> None:
    """On a fresh cluster (no champion, no dataset yet) there is nothing to test against: serve,
    ready and saying so, until the reference resolves, instead of failing at every restart."""
    from twinops.errors import NotFound
    from twinops.monitoring.reference import resolve_reference
    from twinops.monitoring.service import wait_for_reference

    def has_reference() -> bool:
        try:
            resolve_reference(settings, reference)
        except NotFound:
            return False
        return True

    try:
        resolve_reference(settings, reference)
    except NotFound as missing:
        err_console.print(
            f"drift detector on http://{host}:{port}/ waits for a reference ({missing}); "
            "ready meanwhile, events are not tested",
            markup=False,
        )
        wait_for_reference(str(missing), has_reference, host=host, port=port)


app.command("report")(report)
app.command("fit")(fit)
app.command("serve")(serve)
