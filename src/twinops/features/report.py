"""The gate report: counts per reason (this run and the current features), as a table and HTML."""

from __future__ import annotations

import html
from pathlib import Path

from pydantic import BaseModel, Field
from rich.table import Table

from twinops.features.gates import Reason
from twinops.features.results import GateCounts


class RejectedDocument(BaseModel):
    document_id: str
    source_url: str
    reason: str
    detail: str = ""


class GateReport(BaseModel):
    version_id: str | None = None
    scope: str
    run: GateCounts = Field(description="What this run processed.")
    current: GateCounts = Field(description="The features as they are now (the whole scope).")
    rejected_documents: list[RejectedDocument] = Field(default_factory=list)

    def save_json(self, path: Path) -> Path:
        path.write_text(self.model_dump_json(indent=2), encoding="utf-8")
        return path


def _reasons(report: GateReport) -> list[str]:
    known = [reason.value for reason in Reason]
    extra = sorted((set(report.run.rejected) | set(report.current.rejected)) - set(known))
    return known + extra


def gate_table(report: GateReport) -> Table:
    """A rich table: one row per outcome, columns for this run and the current features."""
    table = Table(title=f"Gate report ({report.scope})", show_lines=False)
    table.add_column("outcome")
    table.add_column("this run", justify="right")
    table.add_column("current", justify="right")
    table.add_row("[green]kept[/]", str(report.run.kept), str(report.current.kept))
    for reason in _reasons(report):
        run, current = report.run.rejected.get(reason, 0), report.current.rejected.get(reason, 0)
        style = "red" if run else "dim"
        table.add_row(f"[{style}]{reason}[/]", str(run), str(current))
    table.add_row("unchanged (skipped)", str(report.run.unchanged), "")
    table.add_row("deleted from warehouse", str(report.run.deleted), "")
    for kind in sorted(set(report.run.pii) | set(report.current.pii)):
        table.add_row(
            f"pii {kind} (placeholders)",
            str(report.run.pii.get(kind, 0)),
            str(report.current.pii.get(kind, 0)),
        )
    return table


_STYLE = (
    "body{font-family:system-ui,sans-serif;margin:2rem;color:#222}table{border-collapse:collapse;"
    "margin-bottom:2rem}td,th{border:1px solid #ccc;padding:.3rem .7rem;text-align:left}"
    "td.n{text-align:right}th{background:#f3f3f3}"
)


def render_html(report: GateReport) -> str:
    esc = html.escape
    rows = [("kept", report.run.kept, report.current.kept)]
    rows += [
        (reason, report.run.rejected.get(reason, 0), report.current.rejected.get(reason, 0))
        for reason in _reasons(report)
    ]
    rows += [
        ("unchanged (skipped)", report.run.unchanged, ""),
        ("deleted from warehouse", report.run.deleted, ""),
    ]
    rows += [
        (f"pii {kind}", report.run.pii.get(kind, 0), report.current.pii.get(kind, 0))
        for kind in sorted(set(report.run.pii) | set(report.current.pii))
    ]
    counts = "".join(
        f"<tr><td>{esc(str(a))}</td><td class=n>{b}</td><td class=n>{c}</td></tr>" for a, b, c in rows
    )
    rejected = "".join(
        f"<tr><td>{esc(r.reason)}</td><td>{esc(r.detail)}</td><td>{esc(r.source_url)}</td>"
        f"<td><code>{esc(r.document_id)}</code></td></tr>"
        for r in report.rejected_documents
    )
    return (
        "<!doctype html><html><head><meta charset=utf-8>"
        f"<title>twinops gate report {esc(report.version_id or '')}</title>"
        f"<style>{_STYLE}</style></head><body>"
        f"<h1>Gate report</h1><p>Feature version <code>{esc(report.version_id or '-')}</code>, "
        f"scope <code>{esc(report.scope)}</code>.</p>"
        "<table><tr><th>outcome</th><th>this run</th><th>current</th></tr>"
        f"{counts}</table><h2>Rejected documents ({len(report.rejected_documents)})</h2>"
        "<table><tr><th>reason</th><th>detail</th><th>source</th><th>document</th></tr>"
        f"{rejected}</table></body></html>\n"
    )


def write_html(report: GateReport, path: Path) -> Path:
    path.write_text(render_html(report), encoding="utf-8")
    return path
