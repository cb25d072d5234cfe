"""The ``twinops`` command line: one subcommand group per FTI stage."""

from __future__ import annotations

import functools
import os
import sys

import typer

from twinops.cli import (
    datasets,
    drift,
    etl,
    evaluate,
    features,
    models,
    pipeline,
    quantize,
    registry,
    rollout,
    run,
    serve,
    services,
    train,
)
from twinops.cli.common import err_console, json_stdout_only
from twinops.cli.help_text import reflow_help
from twinops.domain.progress import noticing_to
from twinops.errors import TwinopsError
from twinops.settings import get_settings

app = typer.Typer(
    name="twinops",
    help=(
        "twinops: an LLM Twin factory on Kubeflow.\n\n"
        "Feature side: `etl` collects an author's writing into MongoDB; `features` cleans, gates, "
        "chunks and embeds it into Qdrant and Feast.\n\n"
        "Training side: `datasets` builds instruction/preference sets; `train`, `quantize`, "
        "`evaluate` and `registry` produce and promote the twin.\n\n"
        "Inference: `serve` starts the KServe model servers (LLM, reranker, RAG); `ask` asks the twin.\n\n"
        "Platform: `services`, `models`, `pipeline`; `run` is the whole local loop (`make run`)."
    ),
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


@app.callback()
def _root(
    debug: bool = typer.Option(False, "--debug", help="Show full tracebacks on errors."),
) -> None:
    """Global options."""
    if debug:
        os.environ["TWINOPS_DEBUG"] = "1"


# Platform
app.add_typer(services.app, name="services", rich_help_panel="Platform")
app.add_typer(models.app, name="models", rich_help_panel="Platform")
app.add_typer(pipeline.app, name="pipeline", rich_help_panel="Platform")
app.command("run", rich_help_panel="Platform")(run.run)
# Feature pipeline
app.command("etl", rich_help_panel="Feature pipeline")(etl.etl)
app.command("features", rich_help_panel="Feature pipeline")(features.features)
app.command("lineage", rich_help_panel="Feature pipeline")(features.lineage)
# Training pipeline
app.add_typer(datasets.app, name="datasets", rich_help_panel="Training pipeline")
app.add_typer(train.app, name="train", rich_help_panel="Training pipeline")
app.command("quantize", rich_help_panel="Training pipeline")(quantize.quantize)
app.command("evaluate", rich_help_panel="Training pipeline")(evaluate.evaluate)
app.add_typer(registry.app, name="registry", rich_help_panel="Training pipeline")
# Inference
app.command("serve", rich_help_panel="Inference")(serve.serve)
app.command("ask", rich_help_panel="Inference")(serve.ask)
app.add_typer(drift.app, name="drift", rich_help_panel="Operations")
app.add_typer(rollout.app, name="rollout", rich_help_panel="Inference")


def _is_click_exception(error: BaseException) -> bool:
    """A click usage/parameter error, whichever copy of click raised it.

    typer ships its own click (``typer._click``) whose classes are not ``click.ClickException``;
    matching by class name in the MRO holds for both, and for the next vendored copy.
    """
    return any(klass.__name__ == "ClickException" for klass in type(error).__mro__) and hasattr(
        error, "format_message"
    )


def _usage_line(error: BaseException) -> str:
    """``twinops etl: No such option: --bogus (see `twinops etl --help`)``: the error on one line."""
    context = getattr(error, "ctx", None)
    command = getattr(context, "command_path", "") or "twinops"
    message = " ".join(error.format_message().split())  # type: ignore[attr-defined]
    return f"{command}: {message} (see `{command} --help`)"


def _wants_help(args: list[str]) -> bool:
    return not args or any(arg in ("--help", "-h") for arg in args)


def _check_environment(args: list[str]) -> None:
    """Settings parse and TWINOPS_HOME is writable, before any command runs (not for --help)."""
    if _wants_help(args):
        return
    from twinops.infra.home import ensure_home

    ensure_home(get_settings())


@functools.cache
def _command() -> typer.core.TyperGroup:
    """The click command tree of ``app``, built once, its help reflowed: typer's rich help keeps the
    source's line breaks, and without them it wraps at the terminal's width."""
    return reflow_help(typer.main.get_command(app))


def main(argv: list[str] | None = None) -> int:
    """Entry point: user-fixable errors and usage errors become one line on stderr and exit code 2."""
    args = sys.argv[1:] if argv is None else argv
    debug = "--debug" in args or os.environ.get("TWINOPS_DEBUG") == "1"
    try:
        with (
            json_stdout_only("--json" in args),
            noticing_to(lambda message: err_console.print(message, highlight=False, soft_wrap=True)),
        ):
            _check_environment(args)
            returned = _command()(args=args, prog_name="twinops", standalone_mode=False)
    except TwinopsError as error:
        if debug:
            raise
        err_console.print(f"[red]error:[/] {error}", highlight=False, soft_wrap=True)
        return error.exit_code
    except typer.Exit as exit_:
        return exit_.exit_code
    except typer.Abort:
        err_console.print("aborted")
        return 1
    except Exception as error:
        if not _is_click_exception(error) or debug:
            raise
        if type(error).__name__ == "NoArgsIsHelpError":  # a group run bare: its help is the answer
            error.show()  # type: ignore[attr-defined]
            return 0
        err_console.print(f"[red]error:[/] {_usage_line(error)}", highlight=False, soft_wrap=True)
        return 2
    # Without standalone mode, click returns a command's `typer.Exit` code instead of raising it.
    return returned if isinstance(returned, int) else 0


if __name__ == "__main__":
    sys.exit(main())
