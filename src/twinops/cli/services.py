"""``twinops services``: the embedded MongoDB, Qdrant (local mode) and MLflow."""

from __future__ import annotations

import typer
from rich.table import Table

from twinops.cli.common import JSON_HELP, console, err_console, print_json
from twinops.infra.service_state import ServiceRecord
from twinops.services.manager import ServiceManager
from twinops.settings import get_settings

app = typer.Typer(
    help=(
        "Embedded services for the local default: MongoDB (SecantusDB wire server), Qdrant "
        "(local mode) and MLflow (sqlite). A TWINOPS_*_URI setting replaces each with a cluster "
        "service, which is then checked but never started or stopped."
    ),
    no_args_is_help=True,
)


def _show(services: dict[str, ServiceRecord], as_json: bool) -> None:
    if as_json:
        print_json({name: record.model_dump(mode="json") for name, record in services.items()})
        return
    table = Table("service", "running", "uri", "pid", "detail")
    for name, record in services.items():
        running = "[green]yes[/]" if record.running else "[red]no[/]"
        table.add_row(name, running, record.uri, str(record.pid or "-"), record.detail or "")
    console.print(table)
    mlflow = services.get("mlflow")
    if mlflow and mlflow.running and mlflow.uri.startswith("http"):
        console.print(f"MLflow UI: [link={mlflow.uri}]{mlflow.uri}[/link]")


@app.command()
def up(as_json: bool = typer.Option(False, "--json", help=JSON_HELP)) -> None:
    """Start the embedded services that no TWINOPS_* URI replaces (harmless when already up)."""
    with err_console.status("starting services"):
        services = ServiceManager(get_settings()).up()
    _show(services, as_json)


@app.command()
def down(as_json: bool = typer.Option(False, "--json", help=JSON_HELP)) -> None:
    """Stop only the services that `twinops services up` started (by PID)."""
    stopped = ServiceManager(get_settings()).down()
    if as_json:
        print_json({"stopped": stopped})
    else:
        console.print(f"stopped: {', '.join(stopped) or 'nothing'}")


@app.command()
def status(as_json: bool = typer.Option(False, "--json", help=JSON_HELP)) -> None:
    """Show each service's URI (Qdrant local mode: its folder) and whether it answers."""
    _show(ServiceManager(get_settings()).status(), as_json)
