"""Stage 4 of the converter: follow the data through the tasks, in notebook order.

:class:`DataFlow` holds the state (which task produced the current version of every name,
who read it since, which names share an object...) and runs an explicit, ordered list of
passes (:attr:`DataFlow.PASSES`), each a method with one rule. Following the tasks is
itself a list of per-task rules (:attr:`DataFlow.TASK_RULES`) applied to each task in
notebook order. Every edge records the rule that made it (:class:`~nb2flow.analysis.plan.Rule`).

Nothing built before this stage is changed: the names a task reads and writes once the
notebook functions it calls are taken into account are new :class:`Names` of its own
(:meth:`DataFlow.call_effects`).
"""

from __future__ import annotations

import ast
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from nb2flow.analysis.cells import Unit
from nb2flow.analysis.effects import (
    TRIGGERS,
    draws_figures,
    files_named,
    files_written,
    global_state_used,
    may_hold_state,
    module_aliases,
    passed_to_calls,
    random_generators,
)
from nb2flow.analysis.grouping import ModuleCode, Task
from nb2flow.analysis.hoisting import Hoisted
from nb2flow.analysis.names import (
    BUILTIN_NAMES,
    Names,
    analyse,
    declared_globals,
    definition_time_reads,
)
from nb2flow.analysis.plan import (
    MODULE,
    PARAMETER,
    SCRIPT_NAMES,
    Edge,
    FromModule,
    FromTask,
    Param,
    Reason,
    Rule,
    SetupFunction,
    Source,
)
from nb2flow.errors import Nb2flowError, where
from nb2flow.notebook.identifiers import unique

if TYPE_CHECKING:
    import networkx as nx

_Function = ast.FunctionDef | ast.AsyncFunctionDef


@dataclass(frozen=True)
class FunctionEffect:
    """What calling a notebook function does to module globals (through the notebook
    functions it calls too)."""

    reads: frozenset[str]  # globals it reads when it runs
    writes: frozenset[str]  # globals it sets with `global`


@dataclass
class TaskFlow:
    """What following the data found for one task."""

    task: Task
    index: int  # notebook order
    names: Names  # the body's names with the effects of the notebook functions it calls
    helper_reads: tuple[str, ...] = ()  # globals its notebook functions read
    sources: dict[str, Source] = field(default_factory=dict)  # inputs, in order
    declared: list[str] = field(default_factory=list)  # names the body declares global
    outputs: list[str] = field(default_factory=list)
    maybe_unbound: list[str] = field(default_factory=list)
    maybe_unbound_inputs: list[str] = field(default_factory=list)
    func: str = ""

    @property
    def name(self) -> str:
        return self.task.name


@dataclass
class _Step:
    """A task while the per-task rules run on it."""

    flow: TaskFlow
    mutated: list[str]  # names it changes in place (not modules)
    writes: list[str]  # names it makes a new version of
    unknown: list[str] = field(default_factory=list)  # reads nothing earlier binds

    @property
    def name(self) -> str:
        return self.flow.task.name

    @property
    def names(self) -> Names:
        return self.flow.names


class DataFlow:
    """The data-flow state of one notebook, and the passes that build it."""

    def __init__(
        self,
        hoisted: Hoisted,
        parameters: tuple[Param, ...],
        needs: tuple[str, ...],
        path: Path,
        warnings: list[str],
        *,
        requested: Sequence[tuple[str, int | None]] | None = None,
        every_value: bool = False,
    ) -> None:
        self.tasks = hoisted.tasks
        self.module: tuple[ModuleCode, ...] = hoisted.module
        self.imports = hoisted.imports
        self.artifacts = hoisted.artifacts
        self.configuration = hoisted.configuration
        self.needs = needs
        self.parameters = parameters
        self.path = path
        self.warnings = warnings
        self.by_name = {task.name: task for task in self.tasks}
        # module scope
        self.module_names: set[str] = set()  # exist at module level
        self.module_objects: set[str] = set(needs)  # imports, def and class: never data
        self.star_imports: list[str] = []
        self.effects: dict[str, FunctionEffect] = {}
        self.in_setup: set[ModuleCode] = set()  # blocks the setup function runs
        self.setup: SetupFunction | None = None
        # per task, in notebook order
        self.flows: dict[str, TaskFlow] = {}
        # following the tasks: the producer of each name's current version, the tasks
        # that read that version, names sharing one object (`a = b`), the task that last
        # changed an object through another name, the last task setting a module global
        self.producer: dict[str, Source] = {}
        self.readers: dict[str, list[str]] = {}
        self.aliases: dict[str, set[str]] = {}
        self.mutator: dict[str, str] = {}
        self.global_user: dict[str, str] = {}
        self.last_writer: dict[str, int] = {}  # name -> index of the last task writing it
        # A parameter's value is the current version from its `parameters` cell on (a task
        # above that cell may set the same name, as papermill's injected cell comes later).
        self.pending = sorted((cell, p.name) for p in parameters for cell in p.cells)
        self.edges: dict[tuple[str, str], list[Reason]] = {}
        #: task -> the random generators it passes to calls (which draw from them)
        self.drawn_by_calls: dict[str, list[str]] = {}
        self.finals: dict[str, str] = {}  # name -> task making its final version
        # what the flow returns: the names asked for (with the cell of their output: tag,
        # None for --outputs), None for the default; name -> the task making it
        self.requested = requested
        self.every_value = every_value
        self.returned: dict[str, str] = {}
        self.returned_why = ""  # how they were chosen, for inspect
        self.order: list[str] = []

    def run(self) -> DataFlow:
        for step in self.PASSES:
            step(self)
        return self

    # -- passes over the whole notebook ------------------------------------------------------

    def module_scope(self) -> None:
        """Names that exist at module level: imports, definitions and setup code; a
        function's `global x` binds x only when called, so it is not one of them. The
        modules translated magics use (``subprocess`` for ``!cmd``) are imported at the
        top of the script too."""
        self.module_names |= {m.partition(".")[0] for m in self.needs}  # import a.b binds a
        for text in self.imports:
            self.module_names |= analyse(text).imported
        self.module_objects |= self.module_names
        for block in self.module:
            names = block.unit.names
            self.module_names.update(
                w for w in names.writes if w not in names.global_writes or w in names.definite
            )
            self.module_objects |= names.imported | names.defined
            self.star_imports.extend(names.star_imports)
        for text in self.imports:
            self.star_imports.extend(analyse(text).star_imports)
        if self.star_imports:
            self.warnings.append(
                f"{self.path}: `from {self.star_imports[0]} import *` hides which names it "
                "defines; names no cell defines are assumed to come from it"
            )

    def function_effects(self) -> None:
        """Notebook function name -> what calling it reads and sets (see
        :class:`FunctionEffect`). A module-level function reads every free name of its
        body from the module; a function a task cell defines is a closure over the task's
        names, so only the names it declares ``global`` count. Setup code calling a
        function that sets globals (`h()` with `def h(): global a`) binds them at module
        level."""
        direct: dict[str, tuple[set[str], set[str], set[str]]] = {}
        units = [(b.unit, True) for b in self.module]  # definitions and setup cells
        units += [(u, False) for t in self.tasks for u in t.units]
        for unit, module_level in units:
            body = unit.tree.body
            for stmt in body:
                if not isinstance(stmt, _Function):
                    continue
                # a cell holding just the def: its names are the def's (no second analysis)
                names = unit.names if len(body) == 1 else analyse(ast.Module([stmt], []))
                free = {r for r in names.reads if r not in BUILTIN_NAMES and r != stmt.name}
                reads, writes, calls = direct.setdefault(stmt.name, (set(), set(), set()))
                own = free if module_level else free & declared_globals(stmt)
                reads |= own - self.module_objects
                writes.update(names.global_writes)
                calls |= free
        functions = set(direct)
        for name in direct:
            seen, stack = {name}, [name]
            reads, writes = set(), set()
            while stack:
                own_reads, own_writes, calls = direct[stack.pop()]
                reads |= own_reads
                writes |= own_writes
                for call in calls:
                    if call in direct and call not in seen:
                        seen.add(call)
                        stack.append(call)
            self.effects[name] = FunctionEffect(frozenset(reads - functions), frozenset(writes))
        for block in self.module:
            if block.kind != "definitions":
                for function in block.unit.names.all_reads & self.effects.keys():
                    self.module_names.update(self.effects[function].writes)

    def setup_function(self) -> None:
        """The flow's setup (:class:`~nb2flow.analysis.plan.SetupFunction`): the ``setup``
        cells and the configuration moved out of task cells, in notebook order, with the
        definitions that read what those bind when they run (``def f(x=SEED)``, a class
        body); it takes the flow parameters they read (from their parameters cell on)."""
        if all(block.kind == "definitions" for block in self.module):
            return
        since = {p.name: min(p.cells) for p in self.parameters}
        bound: dict[str, None] = {}  # ordered sets
        parameters: dict[str, None] = {}
        for block in self.module:
            names = block.unit.names
            if block.kind == "definitions":
                if bound.keys().isdisjoint(definition_time_reads(block.unit.tree.body)):
                    continue
                names = analyse(block.code)  # without the imports (they went to the top)
            self.in_setup.add(block)
            for name in names.reads:
                if name not in bound and since.get(name, block.cell) < block.cell:
                    parameters[name] = None
            bound.update(dict.fromkeys(n for n in names.bound if n not in parameters))
        self.setup = SetupFunction(tuple(parameters), tuple(bound))

    def warn_module_reads(self) -> None:
        """Module-level code reading a name nothing defines. Functions read globals when
        called: a task value they read is passed in by the calling task."""
        task_writes = {w for task in self.tasks for w in task.names.writes}
        task_writes |= {p.name for p in self.parameters}
        setup_parameters = set(self.setup.parameters) if self.setup is not None else set()
        for block in self.module:
            reads: Iterable[str] = block.unit.names.reads
            if block in self.in_setup:
                reads = [r for r in reads if r not in setup_parameters]
            if block.kind == "definitions":
                reads = [r for r in reads if r not in task_writes]
            self.warn_unknown([block.unit], reads, task_writes.__contains__)

    def call_effects(self) -> None:
        """Each task's names once its calls are taken into account: ``add_features(df)``
        changes ``df`` when the notebook function changes that parameter in place, and a
        task calling (or passing on) a notebook function reads the globals it reads and
        changes the globals it sets with ``global`` (``bump()`` with ``def bump(): global
        counter; counter += 1`` reads and writes ``counter``)."""
        changers = self._parameter_changers()
        generators = self._random_generators()
        for index, task in enumerate(self.tasks):
            names = task.names
            changed = _changed_arguments(task, changers) if changers else []
            if generators:
                drawn = [g for u in task.units for g in passed_to_calls(u.tree, generators)]
                if drawn:
                    self.drawn_by_calls[task.name] = drawn
                    changed = list(_extend(tuple(changed), drawn))
            if changed:
                names = replace(
                    names,
                    writes=_extend(names.writes, changed),
                    mutated=_extend(names.mutated, changed),
                )
            reads: set[str] = set()
            writes: set[str] = set()
            for function in names.all_reads & self.effects.keys():
                reads |= self.effects[function].reads
                writes |= self.effects[function].writes
            if writes:
                ordered = sorted(writes)
                names = replace(
                    names,
                    reads=_extend(names.reads, [w for w in ordered if w not in names.definite]),
                    all_reads=names.all_reads | writes,
                    writes=_extend(names.writes, ordered),
                    bound=_extend(names.bound, ordered),
                    global_writes=_extend(names.global_writes, ordered),
                )
            self.flows[task.name] = TaskFlow(
                task, index, names, helper_reads=tuple(sorted(reads - writes))
            )
            for name in names.writes:
                self.last_writer[name] = index

    def _random_generators(self) -> set[str]:
        """Names the notebook binds to random generators of its own (see
        :func:`~nb2flow.analysis.effects.random_generators`)."""
        units = [b.unit for b in self.module] + [u for t in self.tasks for u in t.units]
        trees = [u.tree for u in units]
        return random_generators(trees, module_aliases(trees, list(self.needs)))

    def _parameter_changers(self) -> dict[str, set[int | str]]:
        """Notebook function name -> positions and names of the parameters it changes."""
        functions: dict[str, set[int | str]] = {}
        units = [b.unit for b in self.module] + [u for t in self.tasks for u in t.units]
        for unit in units:
            for stmt in unit.tree.body:
                if isinstance(stmt, _Function):
                    changed = _changed_parameters(stmt)
                    if changed:
                        functions.setdefault(stmt.name, set()).update(changed)
        return functions

    def follow_tasks(self) -> None:
        """Apply :attr:`TASK_RULES` to each task in notebook order."""
        self.producer = {name: MODULE for name in self.module_names}
        for flow in self.flows.values():
            self.parameters_until(flow.task.cells[0])
            n = flow.names
            mutated = [m for m in n.mutated if m not in self.module_objects]
            bound, changed_in_place = set(n.bound), set(mutated)
            writes = [w for w in n.writes if w in bound or w in changed_in_place or w in n.deleted]
            step = _Step(flow, mutated, writes)
            for rule in self.TASK_RULES:
                rule(self, step)
        self.parameters_until(float("inf"))

    def file_access(self) -> None:
        """Files as data: a task naming (as a string literal) a file an earlier task writes
        waits for that writer; a task writing a file waits for the earlier tasks naming it
        (they may read the old contents) and for its earlier writer. Only literal paths are
        seen (see :mod:`nb2flow.analysis.effects`)."""
        writes: dict[str, set[str]] = {}
        for task in self.tasks:
            paths: set[str] = set()
            for unit in task.units:
                if not TRIGGERS.isdisjoint(unit.names.all_reads):
                    paths |= files_written(unit.tree)
            writes[task.name] = paths
        if not any(writes.values()):
            return
        writer: dict[str, str] = {}  # path -> the last task writing it
        named_by: dict[str, list[str]] = {}  # path -> tasks naming it since that write
        for task in self.tasks:
            named: set[str] = set()
            for unit in task.units:
                named |= files_named(unit.tree)
            for path in sorted(named):
                source = writer.get(path)
                if source is not None and source != task.name:
                    self.edge(source, task.name, Rule.FILE, path)
            for path in sorted(writes[task.name]):
                for other in [*named_by.get(path, []), writer.get(path)]:
                    if other is not None and other != task.name:
                        self.edge(other, task.name, Rule.FILE, path)
                writer[path] = task.name
                named_by[path] = []
            for path in named - writes[task.name]:
                named_by.setdefault(path, []).append(task.name)

    def pinned_imports(self) -> None:
        """An import that stays in place runs after the task writing its file (or changing
        sys.path)."""
        cell_task = {cell: task.name for task in self.tasks for cell in task.cells}
        for task in self.tasks:
            for unit in task.units:
                for pin in unit.pins.values():
                    for cell in sorted(pin.cells):
                        writer = cell_task.get(cell)
                        if writer is not None and writer != task.name:
                            for why in pin.why:
                                self.edge(writer, task.name, Rule.PINNED_IMPORT, why)

    def global_state(self) -> None:
        """Tasks using the same process-wide state (pyplot's current figure, a random
        seed, mlflow's experiment, the working directory...: see
        :data:`~nb2flow.analysis.effects.GLOBAL_STATE`) keep their notebook order and
        never run at the same time."""
        trees = [b.unit.tree for b in self.module] + [u.tree for t in self.tasks for u in t.units]
        trees += [ast.parse(text) for text in self.imports]
        aliases = module_aliases(trees, list(self.needs))
        stateful = {name for name, path in aliases.items() if may_hold_state(path)}
        last: dict[str, str] = {}  # state -> the last task using it
        moved = self.configuration
        # df.plot(), ax.hist(x): pandas and matplotlib objects draw through pyplot too
        plotting = any(p.split(".")[0] in _PLOTTING_LIBRARIES for p in aliases.values())
        for task in self.tasks:
            used: set[str] = set()
            for unit in task.units:
                tree = unit.tree
                if moved and not moved.isdisjoint(tree.body):  # (they run in the setup)
                    tree = ast.Module([s for s in tree.body if s not in moved], [])
                states = None
                if not stateful.isdisjoint(unit.names.all_reads):
                    states = global_state_used(tree, aliases)
                    used |= states
                if plotting and "pyplot" not in used and draws_figures(tree, aliases, states):
                    used.add("pyplot")
            for state in sorted(used):
                previous = last.get(state)
                if previous is not None:
                    self.edge(previous, task.name, Rule.GLOBAL_STATE, state)
                last[state] = task.name

    def after_tags(self) -> None:
        """``after:NAME`` edges; they must name another task and make no cycle."""
        for task in self.tasks:
            for name, cell in task.after:
                if name not in self.by_name:
                    raise Nb2flowError(
                        f"{where(self.path, cell)}: tag after:{name} names no task "
                        f"(tasks: {', '.join(self.by_name) or 'none'})"
                    )
                if name == task.name:
                    raise Nb2flowError(
                        f"{where(self.path, cell)}: tag after:{name} names its own task"
                    )
                self.edge(name, task.name, Rule.AFTER_TAG, None)

    def call_order(self) -> None:
        """The order the flow calls the tasks in: topological, notebook order as tie-break;
        an ``after:`` cycle is an error naming it."""
        import networkx as nx

        graph = self.graph()
        if not nx.is_directed_acyclic_graph(graph):
            cycle = nx.find_cycle(graph)
            names = [a for a, _ in cycle] + [cycle[0][0]]
            cells = sorted({c for t in names for _, c in self.by_name[t].after})
            raise Nb2flowError(
                f"{where(self.path, cells[0] if cells else None)}: `after:` tags make a cycle: "
                + " -> ".join(names)
            )
        index = {name: flow.index for name, flow in self.flows.items()}
        self.order = list(nx.lexicographical_topological_sort(graph, key=index.__getitem__))

    def graph(self) -> nx.DiGraph:
        """The task graph: task names in notebook order, an :class:`Edge` on each edge."""
        import networkx as nx

        graph = nx.DiGraph()
        graph.add_nodes_from(self.flows)
        graph.add_edges_from(
            (a, b, {"edge": Edge(a, b, tuple(reasons))}) for (a, b), reasons in self.edges.items()
        )
        return graph

    def final_values(self) -> None:
        """What the notebook leaves: the final version of every name a task makes, except
        what is not data (private names, modules, functions, open files, loop variables).
        ``nb2flow check`` compares them all."""
        not_data: dict[str, frozenset[str]] = {}
        for name, source in self.producer.items():
            if not isinstance(source, FromTask):
                continue
            if source.task not in not_data:
                n = self.flows[source.task].names
                not_data[source.task] = n.imported | n.defined | n.resources | n.loop_only
            if name.startswith("_") or name in not_data[source.task]:
                continue
            self.finals[name] = source.task

    def flow_outputs(self) -> None:
        """What the flow returns: the variables the user names (``--outputs``, else
        ``output:NAME`` tags; each must be a value a task computes), else those the
        notebook's last cell showing values of tasks shows (``rmse``, ``rmse, r2``,
        ``print(..., rmse)``: see :mod:`nb2flow.analysis.display`)."""
        if self.requested is None:
            units = [u for flow in self.flows.values() for u in flow.task.units]
            for unit in reversed(units):
                shown = [n for n in unit.shown.names if n in self.finals] if unit.shown else []
                if shown:
                    self.returned = {n: self.finals[n] for n in shown}
                    self.returned_why = f"shown by cell {unit.cell}"
                    return
            self.returned_why = "no cell shows a value a task computes"
            return
        tagged = any(cell is not None for _, cell in self.requested)
        self.returned_why = "output: tags" if tagged else "--outputs"
        for name, cell in self.requested:
            source = self.producer.get(name)
            if isinstance(source, FromTask):
                self.returned[name] = source.task
                continue
            asked = f"{where(self.path, cell)}: tag output:{name}" if cell else f"--outputs {name}"
            if source == PARAMETER:
                why = "is a flow parameter (its caller knows it)"
            elif source == MODULE:
                why = "is set at module level, not by a task"
            else:
                why = "is not set by any task"
            known = ", ".join(self.finals) or "none"
            raise Nb2flowError(f"{asked}: `{name}` {why}; the notebook's values: {known}")

    def task_outputs(self) -> None:
        """What each task returns: the names later tasks read from it and the ones the
        flow returns (with ``every_value``, every value the notebook leaves as well: a run
        keeping its task outputs then holds them all, for ``nb2flow check``)."""
        needed: dict[str, set[str]] = {name: set() for name in self.flows}
        for flow in self.flows.values():
            for name, source in flow.sources.items():
                if isinstance(source, FromTask):
                    needed[source.task].add(name)
        for name, task in self.returned.items():
            needed[task].add(name)
        if self.every_value:
            for name, task in self.finals.items():
                needed[task].add(name)
        for flow in self.flows.values():
            flow.outputs = [w for w in flow.names.writes if w in needed[flow.name]]

    def maybe_unbound(self) -> None:
        """Per task, the outputs it may leave unbound and the inputs that may arrive unbound.

        An output may be unbound when the task binds it on some paths only with no earlier
        value, deletes it on some path (``del x``, an ``except E as x`` target), or gets it
        as an input that may itself be unbound and does not surely bind it. Sources always
        come earlier in notebook order, so one pass in that order suffices."""
        for flow in self.flows.values():
            n = flow.names
            flow.maybe_unbound_inputs = [
                name
                for name, source in flow.sources.items()
                if isinstance(source, FromTask)  # parameters and module names are bound
                and name in self.flows[source.task].maybe_unbound
            ]
            flow.maybe_unbound = [
                o
                for o in flow.outputs
                if o not in n.definite
                and (o not in flow.sources or o in n.deleted or o in flow.maybe_unbound_inputs)
            ]

    def function_names(self) -> None:
        """Task function names: the task name, unless it would shadow a name the code uses."""
        avoid = set(self.module_names) | {p.name for p in self.parameters}
        avoid |= BUILTIN_NAMES | SCRIPT_NAMES
        if self.artifacts is not None:  # the script imports nb2flow.artifacts by that name
            avoid.add(self.artifacts)
        for flow in self.flows.values():
            avoid |= flow.names.all_reads
            avoid.update(flow.names.writes)
        taken = set(avoid)  # grows with each function name
        for flow in self.flows.values():
            base = flow.name if flow.name not in avoid else f"{flow.name}_task"
            flow.func = unique(base, taken)

    PASSES: ClassVar[tuple[Callable[[DataFlow], None], ...]] = (
        module_scope,
        function_effects,
        setup_function,
        warn_module_reads,
        call_effects,
        follow_tasks,
        file_access,
        pinned_imports,
        global_state,
        after_tags,
        call_order,
        final_values,
        flow_outputs,
        task_outputs,
        maybe_unbound,
        function_names,
    )

    # -- rules applied to each task, in notebook order ---------------------------------------

    def read_inputs(self, step: _Step) -> None:
        """A task's inputs are the names it reads whose current version comes from an
        earlier task or a parameter; module-level names are globals, unless the task
        rebinds them (then they are passed in, so the function never reads an unbound
        local)."""
        changed = set(step.writes)
        for name in step.names.reads:
            source = self.producer.get(name)
            if source is None:
                if name not in BUILTIN_NAMES:
                    step.unknown.append(name)
                continue
            if isinstance(source, FromModule) and name not in changed:
                continue  # a global the task reads as is
            step.flow.sources[name] = source

    def partial_writes(self, step: _Step) -> None:
        """Written on some paths only: the old value must come in, as the notebook keeps
        it. (`del name` reads it; an `except E as name` target is not data: Python
        deletes it.)"""
        n = step.names
        bound = set(n.bound)
        for name in n.writes:
            if name in bound and name not in n.definite and name not in n.deleted:
                source = self.producer.get(name)
                if source is not None and name not in step.flow.sources:
                    step.flow.sources[name] = source

    def unknown_reads(self, step: _Step) -> None:
        if step.unknown:
            index = step.flow.index
            self.warn_unknown(
                step.flow.task.units,
                step.unknown,
                lambda name: self.last_writer.get(name, -1) >= index,
            )

    def data_edges(self, step: _Step) -> None:
        for name, source in step.flow.sources.items():
            if isinstance(source, FromTask):
                self.edge(source.task, step.name, Rule.DATA, name)
            self.readers.setdefault(name, []).append(step.name)

    def helper_globals(self, step: _Step) -> None:
        """Globals the notebook functions a task calls read when they run (`def scale(v):
        return v * factor`): the task sets them as module globals, from its inputs when
        another task made the current version (see :meth:`function_effects`)."""
        flow = step.flow
        declared = dict.fromkeys(step.names.global_writes)
        bound = set(step.names.bound)
        for name in flow.helper_reads:
            source = self.producer.get(name)
            if name in bound:
                declared[name] = None  # the task's own value is the one they see
            if source is None or isinstance(source, FromModule) or source == FromTask(flow.name):
                continue
            declared[name] = None  # the current value comes in (it may be read first)
            if name not in flow.sources:
                flow.sources[name] = source
                if isinstance(source, FromTask):
                    self.edge(source.task, flow.name, Rule.HELPER_GLOBAL, name)
                self.readers.setdefault(name, []).append(flow.name)
        flow.declared = list(declared)

    def global_turns(self, step: _Step) -> None:
        """Tasks that set the same module global take turns, in notebook order: on the
        threads runner they share the module."""
        for name in step.flow.declared:
            previous = self.global_user.get(name)
            if previous is not None and previous != step.name:
                self.edge(previous, step.name, Rule.GLOBAL_TURNS, name)
            self.global_user[name] = step.name

    def changed_through_alias(self, step: _Step) -> None:
        """A reader of an object another task changed through an alias waits for it."""
        for name in step.names.reads:
            if self.mutator.get(name, step.name) != step.name:
                self.edge(self.mutator[name], step.name, Rule.CHANGED_THROUGH_ALIAS, name)

    def alias_in_place(self, step: _Step) -> None:
        """`a = b` makes two names for one object: changing it through one changes the
        other, so the readers of the other name's version finish first."""
        changed = set(step.writes)
        for name in step.mutated:
            for other in sorted(self.aliases.get(name, set()) - {name} - changed):
                if not isinstance(self.producer.get(other), FromTask):
                    continue
                self.after_readers(other, step.name, Rule.ALIAS_IN_PLACE)
                self.mutator[other] = step.name
                self.readers[other] = []

    def rebinding(self, step: _Step) -> None:
        for name in step.names.bound:
            self.mutator.pop(name, None)
            shared = self.aliases.pop(name, None)
            if shared is not None:
                shared.discard(name)

    def copies(self, step: _Step) -> None:
        for target, source in step.names.copies:
            shared = self.aliases.setdefault(source, {source})
            shared.add(target)
            self.aliases[target] = shared

    def new_versions(self, step: _Step) -> None:
        """The task makes the current version of what it writes; a task that changes a
        name in place (or deletes it) waits for every task that read the old version."""
        mutated = set(step.mutated)
        drawn = set(self.drawn_by_calls.get(step.name, ()))
        for name in step.writes:
            if name in mutated or name in step.names.deleted:
                # (a generator the task also changes itself, `rng.shuffle(x)`, is in-place)
                own = name in step.flow.task.names.mutated or name in step.names.deleted
                rule = Rule.GENERATOR_DRAWN if name in drawn and not own else Rule.IN_PLACE
                self.after_readers(name, step.name, rule)
            self.readers[name] = []
            self.producer[name] = FromTask(step.name)  # maybe unbound now: see maybe_unbound

    TASK_RULES: ClassVar[tuple[Callable[[DataFlow, _Step], None], ...]] = (
        read_inputs,
        partial_writes,
        unknown_reads,
        data_edges,
        helper_globals,
        global_turns,
        changed_through_alias,
        alias_in_place,
        rebinding,
        copies,
        new_versions,
    )

    # -- helpers -----------------------------------------------------------------------------

    def parameters_until(self, cell: float) -> None:
        """Parameters set by ``parameters`` cells up to ``cell`` are the current versions."""
        while self.pending and self.pending[0][0] <= cell:
            name = self.pending[0][1]
            del self.pending[0]
            self.producer[name] = PARAMETER
            self.readers[name] = []
            self.mutator.pop(name, None)

    def after_readers(self, name: str, task: str, rule: Rule) -> None:
        """``task`` changes ``name``'s object: every reader of the old version finishes first."""
        for reader in self.readers.get(name, []):
            if reader != task:
                self.edge(reader, task, rule, name)

    def edge(self, source: str, target: str, rule: Rule, var: str | None) -> None:
        reasons = self.edges.setdefault((source, target), [])
        reason = Reason(rule, var)
        if reason not in reasons:
            reasons.append(reason)

    def warn_unknown(
        self,
        units: Sequence[Unit],
        names: Iterable[str],
        defined_later: Callable[[str], bool],
    ) -> None:
        """A warning per name read that nothing defines (silenced by a star import)."""
        if self.star_imports:
            return
        for name in names:
            if name in BUILTIN_NAMES or name in self.module_names or name == "display":
                continue  # (the script defines a stand-in for IPython's display: see codegen)
            cell = next((u.cell for u in units if name in u.names.all_reads), units[0].cell)
            hint = " (an IPython built-in)" if name in ("get_ipython", "In", "Out") else ""
            which = "no earlier cell defines" if defined_later(name) else "no cell defines"
            self.warnings.append(f"{where(self.path, cell)}: reads `{name}`{hint}, which {which}")


#: libraries whose objects draw on pyplot's current figure through their own methods
_PLOTTING_LIBRARIES = frozenset({"matplotlib", "pandas", "seaborn"})


def _extend(items: tuple[str, ...], more: Iterable[str]) -> tuple[str, ...]:
    """``items`` then those of ``more`` not in it yet, in order."""
    return tuple(dict.fromkeys([*items, *more]))


def _changed_parameters(fn: ast.FunctionDef | ast.AsyncFunctionDef) -> set[int | str]:
    """Positions and names of the parameters ``fn`` changes in place (``df['x'] = ...``,
    ``lst.append(v)``...), unless it rebinds them first (``df = df.copy()``)."""
    names = analyse(ast.Module(body=fn.body, type_ignores=[]))
    positional = [a.arg for a in [*fn.args.posonlyargs, *fn.args.args]]
    every = set(positional) | {a.arg for a in fn.args.kwonlyargs}
    changed = {m for m in names.mutated if m in every and m not in names.bound}
    return {positional.index(m) for m in changed if m in positional} | changed


def _changed_arguments(task: Task, changers: dict[str, set[int | str]]) -> list[str]:
    """Names the task passes to notebook functions that change those parameters in place."""
    out: dict[str, None] = {}
    for unit in task.units:
        for node in ast.walk(unit.tree):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)):
                continue
            changed = changers.get(node.func.id)
            if not changed:
                continue
            args: list[tuple[int | str, ast.expr]] = list(enumerate(node.args))
            args += [(k.arg, k.value) for k in node.keywords if k.arg]
            for key, arg in args:
                if key in changed and isinstance(arg, ast.Name):
                    out[arg.id] = None
    return list(out)
