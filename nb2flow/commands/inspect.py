"""``nb2flow inspect NB.ipynb``: show the plan (tasks, graph, warnings) without writing."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from nb2flow.analysis.plan import Plan

HELP = "show how a notebook would be converted: tasks, inputs, outputs, graph, warnings"


def add_arguments(p: argparse.ArgumentParser) -> None:
    from nb2flow.commands.convert import output_names

    p.add_argument("notebook", metavar="NB.ipynb")
    p.add_argument(
        "--split",
        choices=("auto", "tags", "headings", "cells"),
        default="auto",
        help="how to cut the notebook into tasks (as for convert)",
    )
    p.add_argument(
        "--outputs",
        type=output_names,
        metavar="NAMES",
        help="the variables the flow returns (as for convert)",
    )
    p.add_argument("--json", action="store_true", help="print the plan as JSON")


def plan_dict(plan: Plan, warnings: Sequence[str]) -> dict[str, Any]:
    """The plan as plain JSON-able data (also used by ``--json``)."""
    return {
        "notebook": plan.notebook,
        "sha256": plan.sha256,
        "flow": plan.flow_name,
        "split": plan.split,
        "parameters": [
            {"name": p.name, "default": p.default, "type": p.hint, "cell": p.cell}
            for p in plan.parameters
        ],
        "tasks": [
            {
                "name": t.name,
                "func": t.func,
                "cells": list(t.cells),
                "inputs": list(t.inputs),
                "outputs": list(t.outputs),
                "options": dict(t.options),
                "after": list(t.after),
                "shows": list(t.shows),  # cells whose displayed value the task records
            }
            for t in plan.tasks.values()
        ],
        "edges": [
            {
                "from": e.source,
                "to": e.target,
                "kind": e.kind,
                "vars": list(e.vars),
                "reasons": [{"rule": r.rule.label, "var": r.var} for r in e.reasons],
            }
            for e in plan.edges()
        ],
        "stages": stages(plan),
        "module_cells": [block.cell for block in plan.module],
        "skipped_cells": list(plan.skipped),
        "outputs": list(plan.outputs),
        "outputs_rule": plan.outputs_rule,
        "values": list(plan.finals),
        "warnings": list(warnings),
    }


def stages(plan: Plan) -> list[list[str]]:
    """Tasks grouped by the longest chain of edges above them, in call order."""
    depth: dict[str, int] = {}
    for name in plan.order:
        depth[name] = max((depth[p] + 1 for p in plan.predecessors(name)), default=0)
    out: list[list[str]] = [[] for _ in range(max(depth.values(), default=-1) + 1)]
    for name in plan.order:
        out[depth[name]].append(name)
    return out


def run(args: argparse.Namespace) -> int:
    from nb2flow.analysis.pipeline import build_plan
    from nb2flow.codegen import source_label
    from nb2flow.commands.convert import cells_text

    plan = build_plan(
        args.notebook,
        split=args.split,
        label=source_label(args.notebook),
        outputs=args.outputs,
    )
    warnings = plan.warnings
    data = plan_dict(plan, warnings)
    if args.json:
        json.dump(data, sys.stdout, indent=2)
        print()
        return 0
    print(f"{data['notebook']}: flow {data['flow']!r}, split by {data['split']}")
    if data["parameters"]:
        print("\nparameters:")
        for p in data["parameters"]:
            kind = f": {p['type']}" if p["type"] else ""
            print(f"  {p['name']}{kind} = {p['default']}  (cell {p['cell']})")
    if data["module_cells"]:
        print(f"\nmodule level (imports, definitions, setup): cells {_list(data['module_cells'])}")
    if data["skipped_cells"]:
        print(f"skipped: cells {_list(data['skipped_cells'])}")
    rows = [("task", "cells", "inputs", "outputs", "options")]
    for t in data["tasks"]:
        options = ", ".join(f"{k}={v}" for k, v in t["options"].items())
        if t["after"]:
            options = ", ".join(filter(None, [options, "after=" + "/".join(t["after"])]))
        rows.append(
            (
                t["name"],
                cells_text(t["cells"]).removeprefix("cells ").removeprefix("cell "),
                _fit(t["inputs"], COLUMN),
                _fit(t["outputs"], COLUMN),
                options or "-",
            )
        )
    print(f"\n{len(data['tasks'])} tasks:")
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    for r in rows:
        cols = [r[i].ljust(widths[i]) for i in range(4)] + [r[4]]
        print("  " + "  ".join(cols).rstrip())
    print("\ngraph:")
    if not data["edges"]:
        print("  (no edges: every task is independent)")
    rules: dict[str, str] = {}
    for e in data["edges"]:
        kind = "" if e["kind"] == "data" else f" ({e['kind']})"
        print(f"  {e['from']} -> {e['to']}{kind}: {_reasons(e['reasons'], rules)}")
    if rules:
        print("  why (for the edges that carry no value):")
        for label, description in rules.items():
            print(f"    {label}: {description}")
    if data["tasks"]:
        print("\nstages (tasks in one stage can run at the same time):")
        for i, stage in enumerate(data["stages"], 1):
            print(f"  {i}. {', '.join(stage)}")
    returned = ", ".join(data["outputs"]) or "nothing"
    print(f"\nflow returns: {returned} ({data['outputs_rule']})")
    if data["values"]:
        print(
            f"values the notebook leaves (nb2flow check compares them): {_fit(data['values'], 200)}"
        )
    if warnings:
        print(f"\n{len(warnings)} warnings:")
        for message in warnings:
            print(f"  {message}")
    return 0


COLUMN = 40


def _reasons(reasons: list[dict[str, Any]], rules: dict[str, str]) -> str:
    """``x, df (in-place), out.csv (file)``: the variables, each with the rule that made
    the edge unless it is the value passed; ``rules`` collects the labels shown."""
    from nb2flow.analysis.plan import Rule

    items = []
    for reason in reasons:
        rule = next(r for r in Rule if r.label == reason["rule"])
        if rule.kind == "data":
            items.append(reason["var"])
            continue
        rules.setdefault(rule.label, rule.description)
        items.append(f"{reason['var']} ({rule.label})" if reason["var"] else f"({rule.label})")
    return ", ".join(dict.fromkeys(items))


def _fit(names: list[str], width: int) -> str:
    """Whole names that fit in ``width`` characters, then ``+N`` for the rest."""
    if not names:
        return "-"
    shown: list[str] = []
    for i, name in enumerate(names):
        rest = len(names) - i - 1
        suffix = f" +{rest}" if rest else ""
        candidate = ", ".join([*shown, name])
        if shown and len(candidate + suffix) > width:
            return ", ".join(shown) + f" +{len(names) - len(shown)}"
        shown.append(name)
    return ", ".join(shown)


def _list(cells: list[int]) -> str:
    return ", ".join(map(str, cells))
