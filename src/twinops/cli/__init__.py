"""The ``twinops`` command line: one subcommand group per FTI stage."""

from __future__ import annotations

import os
import sys

import typer

from twinops.cli import (
    datasets,
    etl,
    evaluate,
    features,
    models,
    pipeline,
    quantize,
    registry,
    run,
    serve,
    services,
    train,
)
from twinops.cli.common import err_console
from twinops.errors import TwinopsError

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


def main(argv: list[str] | None = None) -> int:
    """Entry point: user-fixable errors become one line on stderr and exit code 2."""
    args = sys.argv[1:] if argv is None else argv
    try:
        app(args=args, prog_name="twinops", standalone_mode=False)
    except TwinopsError as error:
        if "--debug" in args or os.environ.get("TWINOPS_DEBUG") == "1":
            raise
        err_console.print(f"[red]error:[/] {error}", highlight=False, soft_wrap=True)
        return error.exit_code
    except typer.Exit as exit_:
        return exit_.exit_code
    except typer.Abort:
        err_console.print("aborted")
        return 1
    except Exception as error:  # click usage errors carry their own exit code
        import click

        if isinstance(error, click.ClickException):
            error.show()
            return error.exit_code
        raise
    return 0


if __name__ == "__main__":
    sys.exit(main())
