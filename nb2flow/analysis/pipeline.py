"""Notebook -> :class:`~nb2flow.analysis.plan.Plan`: the converter's stages, each a function
of the previous one's result (as nbconvert chains preprocessors):

1. :func:`~nb2flow.analysis.cells.prepare`: every code cell becomes a unit (tags, magics,
   syntax, names);
2. :func:`~nb2flow.analysis.grouping.group`: what each cell is, task cells grouped into tasks;
3. :func:`~nb2flow.analysis.hoisting.hoist`: imports and movable functions go to module level;
4. :class:`~nb2flow.analysis.dataflow.DataFlow`: the data followed through the tasks
   (inputs, outputs, edges, call order, function names);
5. :func:`assemble`: the frozen plan codegen renders.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from nb2flow.analysis.cells import prepare
from nb2flow.analysis.dataflow import DataFlow
from nb2flow.analysis.grouping import Grouping, group
from nb2flow.analysis.hoisting import Hoisted, hoist
from nb2flow.analysis.plan import ModuleBlock, Plan, PlannedTask
from nb2flow.notebook.reader import Notebook, read_notebook


def build_plan(
    notebook: str | Path | Notebook,
    *,
    split: str = "auto",
    cache_all: bool = False,
    label: str | None = None,
    outputs: Sequence[str] | None = None,
    every_value: bool = False,
) -> Plan:
    """The plan of ``notebook``; raises Nb2flowError on bad input. ``label`` is how the
    script names the notebook (default: its path).

    ``outputs`` names the variables the flow returns (default: the ``output:NAME`` tags,
    else what the notebook's last cell showing values shows). With ``every_value`` each
    task also returns the values the notebook leaves that it makes (``nb2flow check`` reads
    them from the task runs)."""
    with paused_gc():
        return _build_plan(
            notebook,
            split=split,
            cache_all=cache_all,
            label=label,
            outputs=None if outputs is None else tuple(dict.fromkeys(outputs)),
            every_value=every_value,
        )


@contextmanager
def paused_gc() -> Iterator[None]:
    """No cyclic garbage collection inside: the stages allocate many small objects (syntax
    trees, names) that live until the end, and the collector scanning them again and again
    made conversion time grow faster than the notebook (a third of it at 20,000 cells)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _build_plan(
    notebook: str | Path | Notebook,
    *,
    split: str,
    cache_all: bool,
    label: str | None,
    outputs: tuple[str, ...] | None,
    every_value: bool,
) -> Plan:
    nb = notebook if isinstance(notebook, Notebook) else read_notebook(notebook)
    units, warnings = prepare(nb)
    grouping = group(nb, units, split)
    warnings.extend(grouping.warnings)
    hoisted = hoist(grouping)
    imports_written_files = _imports_written_files(grouping)
    needs = hoisted.needs
    if imports_written_files and "sys" not in needs:
        needs = (*needs, "sys")  # the script puts the working directory on sys.path
    flow = DataFlow(
        hoisted,
        grouping.parameters,
        needs,
        nb.path,
        warnings,
        requested=_requested_outputs(grouping, outputs),
        every_value=every_value,
    ).run()
    return assemble(
        nb,
        grouping,
        hoisted,
        flow,
        needs=needs,
        imports_written_files=imports_written_files,
        requested_split=split,
        cache_all=cache_all,
        label=label if label is not None else str(nb.path),
        outputs_option=outputs,
        every_value=every_value,
    )


def _requested_outputs(
    grouping: Grouping, option: tuple[str, ...] | None
) -> list[tuple[str, int | None]] | None:
    """The variables asked for, each with the cell of its ``output:`` tag (None: the
    option, which wins over the tags); None when nothing is asked (the default rule)."""
    if option is not None:
        return [(name, None) for name in option]
    tagged: dict[str, int] = {}
    for unit in grouping.units:
        if unit.tags.role != "skip":
            for name in unit.tags.outputs:
                tagged.setdefault(name, unit.cell)
    return list(tagged.items()) or None


def _imports_written_files(grouping: Grouping) -> bool:
    """Does the notebook import a module it writes? Jupyter imports from the working
    directory ('' on sys.path); a script does not."""
    return any(
        why != "sys.path"
        for unit in grouping.units
        for pin in unit.pins.values()
        for why in pin.why
    )


def assemble(
    nb: Notebook,
    grouping: Grouping,
    hoisted: Hoisted,
    flow: DataFlow,
    *,
    needs: tuple[str, ...],
    imports_written_files: bool,
    requested_split: str,
    cache_all: bool,
    label: str,
    outputs_option: tuple[str, ...] | None = None,
    every_value: bool = False,
) -> Plan:
    """The frozen plan from the results of the stages."""
    tasks: dict[str, PlannedTask] = {}
    for name in flow.order:
        f = flow.flows[name]
        task = f.task
        tasks[name] = PlannedTask(
            name=name,
            func=f.func,
            cells=task.cells,
            doc=task.doc,
            code=task.code,
            inputs=tuple(f.sources),
            sources=dict(f.sources),
            outputs=tuple(f.outputs),
            globals=tuple(f.declared),
            maybe_unbound=tuple(f.maybe_unbound),
            maybe_unbound_inputs=tuple(f.maybe_unbound_inputs),
            options={**task.options, "cache": True} if cache_all else dict(task.options),
            after=tuple(name for name, _ in task.after),
            shows=task.shows,
        )
    # final values in the order the notebook first sets them
    first_written: dict[str, None] = {}
    for f in flow.flows.values():
        first_written.update(dict.fromkeys(w for w in f.names.writes if w in flow.finals))
    used = set(flow.module_names)
    for block in hoisted.module:
        used |= block.unit.names.all_reads
    for f in flow.flows.values():
        used |= f.names.all_reads
        used.update(f.names.writes)
    return Plan(
        notebook=label,
        sha256=nb.sha256,
        flow_name=nb.path.stem,
        flow_doc="\n\n".join(grouping.intro),
        # the module docstring describes the script with the first of them (the title cell)
        flow_summary=grouping.intro[0] if grouping.intro else "",
        parameters_doc=grouping.parameters_doc,
        split=grouping.split,
        requested_split=requested_split,
        cache_all=cache_all,
        parameters=grouping.parameters,
        module=tuple(
            ModuleBlock(b.cell, b.kind, b.code, b.doc, b in flow.in_setup) for b in hoisted.module
        ),
        setup=flow.setup,
        imports=hoisted.imports,
        needs=needs,
        imports_written_files=imports_written_files,
        module_names=tuple(sorted(flow.module_names)),
        star_imports=tuple(flow.star_imports),
        used_names=tuple(sorted(used)),
        tasks=tasks,
        outputs=dict(flow.returned),
        outputs_rule=flow.returned_why,
        finals={name: flow.finals[name] for name in first_written},
        outputs_option=outputs_option,
        every_value=every_value,
        artifacts=hoisted.artifacts,
        skipped=grouping.skipped,
        warnings=tuple(flow.warnings),
        graph=flow.graph(),
        statements=tuple((u.cell, stmt) for u in grouping.units for stmt in u.tree.body),
    )
