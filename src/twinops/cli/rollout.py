"""``twinops rollout``: canary rollouts of a new model on a KServe InferenceService or the local router."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

import typer
from rich.table import Table

from twinops.cli.common import JSON_HELP, console, err_console, print_json
from twinops.rollout.plan import DEFAULT_INTERVAL, DEFAULT_STEPS, HEALTH_MODES, Thresholds
from twinops.settings import get_settings

_DEFAULTS = Thresholds()


# The choices of --health, from the one definition (twinops.rollout.plan.HealthMode).
HealthSource = StrEnum("HealthSource", {mode: mode for mode in HEALTH_MODES})


app = typer.Typer(
    name="rollout",
    help=(
        "Canary rollouts of a new model on an InferenceService or the local router.\n\n"
        "`start` sends a share of traffic to a new model and raises it step by step "
        "while the canary keeps its golden-set score, error rate and latency. A failed or "
        "inconclusive analysis (a gate not measured) holds the canary at its step; too many in a row "
        "roll it back. After the last step it is promoted: the pinned version becomes the predictor "
        "and takes MLflow's `champion` (the release is the only writer of `champion`); a rolled-back "
        "version is tagged rejected and loses `challenger`. Knative (Serverless) services use "
        "canaryTrafficPercent with tag routing, Standard (RawDeployment) ones spec.canary[]; the mode "
        "is read from the InferenceService. One controller drives a rollout at a time (a Lease). "
        "`--router URL` drives the local router of `twinops serve llm --canary-dir` instead."
    ),
    no_args_is_help=True,
)

IsvcOption = Annotated[str, typer.Option("--isvc", help="InferenceService name (the local rollout's name).")]
NamespaceOption = Annotated[str, typer.Option("--namespace", "-n", help="Kubernetes namespace.")]
RouterOption = Annotated[
    str | None,
    typer.Option("--router", help="Local router URL (e.g. http://127.0.0.1:8188): roll out there instead."),
]
JsonOption = Annotated[bool, typer.Option("--json", help=JSON_HELP)]


def _options(isvc: str, namespace: str, router: str | None, **extra):
    from twinops.rollout.runner import RolloutOptions

    return RolloutOptions(isvc=isvc, namespace=namespace, router=router, **extra)


def _say(message: str) -> None:
    err_console.print(message, highlight=False, markup=False)


def _print_state(state, as_json: bool) -> None:
    if as_json:
        print_json(state.model_dump(mode="json"))
        return
    registry = f" ({state.registry_name} v{state.registry_version})" if state.registry_name else ""
    console.print(
        f"{state.namespace}/{state.name} [{state.mode}]: {state.phase.replace('_', ' ')}, canary at "
        f"{state.percent}% of {','.join(map(str, state.steps))}; model {state.model_uri}{registry}",
        highlight=False,
        markup=False,
    )
    table = Table("when (UTC)", "decision", "traffic", "score", "errors", "p95 s", "why")
    for decision in state.decisions:
        health = decision.health
        table.add_row(
            f"{decision.at:%Y-%m-%d %H:%M:%S}",
            decision.action + (" (manual)" if decision.manual else ""),
            f"{decision.percent}%",
            "" if decision.score is None else f"{decision.score:.3f}",
            "" if health is None or health.error_rate is None else f"{health.error_rate:.1%}",
            "" if health is None or health.p95_latency_s is None else f"{health.p95_latency_s:.2f}",
            "; ".join(decision.reasons),
        )
    console.print(table)


@app.command()
def start(
    *,
    isvc: IsvcOption,
    model_uri: Annotated[
        str,
        typer.Option("--model-uri", help="models:/NAME@ALIAS, models:/NAME/VERSION or a storage URI."),
    ],
    steps: Annotated[
        str, typer.Option("--steps", help="Traffic percents, increasing, up to 100.")
    ] = DEFAULT_STEPS,
    interval: Annotated[
        str,
        typer.Option("--interval", help="Time at each step (30s, 5m, 1h), or one per step (1m,5m,5m,10m)."),
    ] = DEFAULT_INTERVAL,
    approve_at: Annotated[
        int | None,
        typer.Option(
            "--approve-at", help="After this step's analysis passes, wait for `twinops rollout promote`."
        ),
    ] = None,
    namespace: NamespaceOption = "twinops",
    router: RouterOption = None,
    model_name: Annotated[
        str | None, typer.Option("--model-name", help="Model name the server answers to; default: --isvc.")
    ] = None,
    golden: Annotated[
        str, typer.Option("--golden", help="Golden set: latest, a version id, a folder, or none.")
    ] = "latest",
    golden_limit: Annotated[int, typer.Option("--golden-limit", min=1, help="Questions per score.")] = 8,
    max_error_rate: Annotated[
        float, typer.Option("--max-error-rate", min=0, max=1)
    ] = _DEFAULTS.max_error_rate,
    max_p95_latency: Annotated[
        float, typer.Option("--max-p95-latency", min=0, help="Seconds.")
    ] = _DEFAULTS.max_p95_latency_s,
    max_score_drop: Annotated[
        float, typer.Option("--max-score-drop", min=0, help="Largest golden-set score drop vs stable.")
    ] = _DEFAULTS.max_score_drop,
    failure_threshold: Annotated[
        int, typer.Option("--failure-threshold", min=1, help="Failed analyses in a row that roll back.")
    ] = _DEFAULTS.failure_threshold,
    inconclusive_limit: Annotated[
        int,
        typer.Option("--inconclusive-limit", min=1, help="Inconclusive analyses in a row that roll back."),
    ] = _DEFAULTS.inconclusive_limit,
    health: Annotated[
        HealthSource,
        typer.Option(
            "--health",
            help="prometheus (TWINOPS_PROMETHEUS_URL), probe (a few requests to the canary), or auto: "
            "Prometheus when set, probing only on the local router.",
        ),
    ] = HealthSource.auto,
    detach: Annotated[
        bool, typer.Option("--detach", help="Start only; a controller Deployment follows it.")
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Start a canary and follow it step by step to promotion or rollback (exit code 1 when rolled back).

    Input is checked before anything is patched: the steps, the interval, the InferenceService (and
    a mode/mechanism combination KServe would ignore), then the model URI (an alias is pinned to its
    version). Starting again with the same --model-uri continues a running rollout.
    """
    from twinops.rollout.runner import start_rollout

    options = _options(
        isvc,
        namespace,
        router,
        model_name=model_name,
        golden=None if golden == "none" else golden,
        golden_limit=golden_limit,
        health=health.value,
    )
    thresholds = Thresholds(
        max_error_rate=max_error_rate,
        max_p95_latency_s=max_p95_latency,
        max_score_drop=max_score_drop,
        failure_threshold=failure_threshold,
        inconclusive_limit=inconclusive_limit,
    )
    state = start_rollout(
        options,
        get_settings(),
        model_uri=model_uri,
        steps=steps,
        interval=interval,
        thresholds=thresholds,
        approve_at=approve_at,
        wait=not detach,
        on_event=_say,
    )
    _print_state(state, as_json)
    if state.phase == "rolled_back":
        raise typer.Exit(1)


@app.command()
def status(
    *,
    isvc: IsvcOption,
    namespace: NamespaceOption = "twinops",
    router: RouterOption = None,
    as_json: JsonOption = False,
) -> None:
    """Where the rollout stands and every decision so far."""
    from twinops.rollout.runner import make_controller

    options = _options(isvc, namespace, router, golden=None)
    controller = make_controller(options, get_settings(), record=False, judge=False)
    _print_state(controller.status(), as_json)


def _by_hand(
    action: str, *, isvc: str, namespace: str, router: str | None, reason: str, as_json: bool
) -> None:
    from twinops.rollout.runner import make_controller

    options = _options(isvc, namespace, router, golden=None)
    controller = make_controller(options, get_settings(), judge=False, on_event=_say)
    _print_state(controller.decide_by_hand(action, reason), as_json)  # type: ignore[arg-type]


@app.command()
def promote(
    *,
    isvc: IsvcOption,
    namespace: NamespaceOption = "twinops",
    router: RouterOption = None,
    reason: Annotated[str, typer.Option("--reason", help="Why, for the record.")] = "promoted by hand",
    as_json: JsonOption = False,
) -> None:
    """Promote the running canary now: it becomes the predictor and takes `champion`.

    On a rollout paused by --approve-at, this approves it: the canary goes on to its next step.
    """
    _by_hand("promote", isvc=isvc, namespace=namespace, router=router, reason=reason, as_json=as_json)


@app.command()
def rollback(
    *,
    isvc: IsvcOption,
    namespace: NamespaceOption = "twinops",
    router: RouterOption = None,
    reason: Annotated[str, typer.Option("--reason", help="Why, for the record.")] = "rolled back by hand",
    as_json: JsonOption = False,
) -> None:
    """Roll the running canary back now: traffic to 0 and the previous predictor restored."""
    _by_hand("rollback", isvc=isvc, namespace=namespace, router=router, reason=reason, as_json=as_json)
