"""The terminal rendering of a :class:`~nb2flow.check.CheckReport` (rich table)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from nb2flow.check.compare import DIFFERENT, EQUAL, NOT_COMPARED

if TYPE_CHECKING:  # pragma: no cover
    from rich.console import Console

    from nb2flow.check import CheckReport

_STYLE = {EQUAL: "green", DIFFERENT: "bold red", NOT_COMPARED: "yellow", "ignored": "dim"}


def print_report(report: CheckReport, console: Console | None = None) -> None:
    from rich.markup import escape
    from rich.table import Table

    from nb2flow.console import rich_console

    console = console or rich_console()
    seconds = ", ".join(f"{k} {v:.1f} s" for k, v in report.seconds.items())
    console.print(f"[bold]nb2flow check[/] {escape(report.notebook)}  [dim]({seconds})[/]")
    if report.parameters:
        params = ", ".join(f"{k}={v}" for k, v in report.parameters.items())
        console.print(f"parameters: {escape(params)}")
    for warning in report.conversion_warnings:
        console.print(f"[yellow]conversion warning:[/] {escape(warning)}")
    if report.notebook_error:
        console.print(f"[bold red]the notebook failed:[/] {escape(report.notebook_error)}")
    if report.flow_error:
        console.print(f"[bold red]the flow failed:[/] {escape(report.flow_error)}")
    if report.notebook_error:
        console.print(
            "The notebook does not run top to bottom on its own (skipped cells left out), "
            "so there is nothing to compare: fix it, its data or its packages first."
        )
    if report.rows:
        table = Table(show_lines=False)
        table.add_column("value")
        table.add_column("type", style="dim")
        table.add_column("result")
        table.add_column("detail", overflow="fold")
        for row in report.rows:
            style = _STYLE.get(row.status, "bold red")
            table.add_row(
                escape(row.name),
                escape(row.type),
                f"[{style}]{escape(row.status)}[/]",
                escape(row.detail),
            )
        console.print(table)
    elif not (report.notebook_error or report.flow_error):
        console.print("the flow returns no values to compare")
    counts = report.counts()
    summary = ", ".join(f"{n} {status}" for status, n in counts.items()) or "nothing compared"
    verdict = "[bold green]PASS[/]" if report.ok else "[bold red]FAIL[/]"
    console.print(f"{verdict}: {summary}")
