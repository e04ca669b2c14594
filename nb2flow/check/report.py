"""The terminal rendering of a :class:`~nb2flow.check.CheckReport` (rich table)."""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

from nb2flow.check.compare import DIFFERENT, EQUAL, NOT_COMPARED

if TYPE_CHECKING:  # pragma: no cover
    from rich.console import Console

    from nb2flow.check import CheckReport

_STYLE = {
    EQUAL: "green",
    DIFFERENT: "bold red",
    NOT_COMPARED: "yellow",
    "ignored": "dim",
    "nondeterministic in the notebook": "magenta",
}
_VERDICT = {
    "pass": "[bold green]PASS[/]",
    "fail": "[bold red]FAIL[/]",
    "nothing compared": "[bold yellow]NOTHING COMPARED[/]",
}


def print_report(report: CheckReport, console: Console | None = None) -> None:
    from rich.markup import escape
    from rich.table import Table

    from nb2flow.console import rich_console

    console = console or rich_console()
    say = functools.partial(console.print, soft_wrap=True)  # lines stay whole, for grep
    seconds = ", ".join(f"{k} {v:.1f} s" for k, v in report.seconds.items())
    say(f"[bold]nb2flow check[/] {escape(report.notebook)}  [dim]({seconds})[/]")
    if report.parameters:
        params = ", ".join(f"{k}={v}" for k, v in report.parameters.items())
        say(f"parameters: {escape(params)}")
    for warning in report.conversion_warnings:
        say(f"[yellow]conversion warning:[/] {escape(warning)}")
    if report.notebook_error:
        say(f"[bold red]the notebook failed:[/] {escape(report.notebook_error)}")
    if report.flow_error:
        say(f"[bold red]the flow failed:[/] {escape(report.flow_error)}")
    for side, why in report.skipped.items():
        say(f"[yellow]the {escape(side)} did not finish:[/] {escape(why)}")
    if report.notebook_error:
        say(
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
        say("the notebook leaves no values to compare")
    if report.flow_returns:
        say(f"the flow returns: {escape(', '.join(report.flow_returns))}")
    for note in report.notes:
        say(f"[dim]note:[/] {escape(note)}")
    others = ", ".join(
        f"{n} {status}" for status, n in report.counts().items() if status not in (EQUAL, DIFFERENT)
    )
    compared = f"{report.compared} value{'s' if report.compared != 1 else ''} compared"
    counts = report.counts()
    if report.compared:
        compared += (
            " (" + ", ".join(f"{counts[s]} {s}" for s in (EQUAL, DIFFERENT) if counts.get(s)) + ")"
        )
    summary = compared + (f"; {others}" if others else "")
    if report.verdict == "nothing compared":
        summary += ": nothing here proves the conversion"
    say(f"{_VERDICT[report.verdict]}: {escape(summary)}")
