"""The notebook's final values from a flow run: each task run's outputs, kept by the
runtime's ``keep_outputs`` mode, not the flow's return (which holds only what the user asked
for). The script is converted with ``every_value`` so that its tasks return them all
(:meth:`nb2flow.analysis.plan.Plan.returned_by` says where each one is)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def run_for_values(
    flow: Any, params: Mapping[str, Any], where: Mapping[str, tuple[str, int, int]]
) -> tuple[Any, dict[str, Any]]:
    """Call ``flow`` with ``params``, keeping every task run's outputs; return what the flow
    returned and the value of each name of ``where`` (name -> (task, position, count)).
    The flow's error, if it fails, is raised. A task that has no output (it did not run)
    leaves its names out. Output capture is on, as ``run_cli`` has it for the script: each
    task shows and closes the figures it leaves open, as Jupyter does after each cell."""
    capture = {"log_prints": True} if flow.log_prints is None else {}
    run = flow.with_options(keep_outputs=True, **capture)(**params, return_state=True)
    returned = run.result()
    values: dict[str, Any] = {}
    for name, (task, index, count) in where.items():
        try:
            value = run.output(task)
        except KeyError:
            continue
        values[name] = value if count == 1 else value[index]
    return returned, values
