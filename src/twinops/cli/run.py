"""``twinops run``: the whole local FTI loop that ``make run`` calls."""

from __future__ import annotations

import typer

from twinops.cli.common import JSON_HELP, console, err_console, print_json
from twinops.models.bundled import pull_all
from twinops.services.manager import ServiceManager
from twinops.settings import get_settings


def run(as_json: bool = typer.Option(False, "--json", help=JSON_HELP)) -> None:
    """Run the local loop: services up, models pull, then every stage that has landed."""
    settings = get_settings()
    with err_console.status("starting services"):
        services = ServiceManager(settings).up()
    with err_console.status("caching bundled models"):
        models = pull_all(settings)
    summary = {
        "home": str(settings.home),
        "services": {name: record.uri for name, record in services.items()},
        "models": {model.name: str(model.path) for model in models},
    }
    if as_json:
        print_json(summary)
        return
    console.rule("twinops: local loop done")
    mlflow = services.get("mlflow")
    if mlflow and mlflow.uri.startswith("http"):
        console.print(f"MLflow UI:      {mlflow.uri}")
    console.print(f"TWINOPS_HOME:   {settings.home}")
    for name, path in summary["models"].items():
        console.print(f"model {name}: {path}")
