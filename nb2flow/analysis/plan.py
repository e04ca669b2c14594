"""The plan: everything the converter decided about a notebook, as frozen data.

This is the whole interface between analysis and codegen (and ``nb2flow inspect``): a
:class:`Plan` holds the flow's description, its parameters, the module-level code blocks,
and one :class:`PlannedTask` per task in call order; the task graph (a
``networkx.DiGraph`` of task names) carries one :class:`Edge` per ordered pair, with the
rules that made it. :func:`nb2flow.analysis.pipeline.build_plan` makes it.

Where a task's input comes from is a :class:`Source`: another task (:class:`FromTask`), a
flow parameter (:data:`PARAMETER`) or the module level (:data:`MODULE`): typed, so that
no task name (a heading ``## Module``...) can be mistaken for one of the others.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    import ast

    import networkx as nx

#: names the generated script itself uses at module level
SCRIPT_NAMES = frozenset({"flow", "task", "run_cli", "nb2flow", "main"})
#: the statement ending a cell that plots inside a task's code (more cells follow): the
#: cell's pyplot figures are shown and closed (:func:`nb2flow.artifacts.end_of_cell`)
CELL_END = "nb2flow.artifacts.end_of_cell()"


# -- where a value comes from ----------------------------------------------------------------


@dataclass(frozen=True)
class FromTask:
    """The value an earlier task returns."""

    task: str

    def __str__(self) -> str:
        return f"task {self.task}"


@dataclass(frozen=True)
class FromParameter:
    """A flow parameter (a literal of a ``parameters`` cell)."""

    def __str__(self) -> str:
        return "parameter"


@dataclass(frozen=True)
class FromModule:
    """A module-level name of the script (imports, definitions, setup code)."""

    def __str__(self) -> str:
        return "module level"


Source = FromTask | FromParameter | FromModule
PARAMETER = FromParameter()
MODULE = FromModule()


# -- edges ------------------------------------------------------------------------------------

EdgeKind = Literal["data", "after", "order"]


class Rule(enum.Enum):
    """Why one task runs after another. ``kind`` says what the edge carries: ``data`` (a
    value is passed), ``after`` (an ``after:`` tag) or ``order`` (``wait_for``, no data)."""

    DATA = ("data", "reads a value the task computes")
    HELPER_GLOBAL = ("data", "calls a notebook function reading a global the task sets")
    GLOBAL_TURNS = ("order", "both set a module global a notebook function uses")
    IN_PLACE = ("order", "reads the old value before the task changes it in place")
    GENERATOR_DRAWN = (
        "order",
        "reads a random generator before the task passes it to a call, which draws from it",
    )
    ALIAS_IN_PLACE = ("order", "reads the old value before the task changes it through an alias")
    CHANGED_THROUGH_ALIAS = ("order", "reads a value the task changed through an alias")
    FILE = ("order", "a file one task writes and the other names")
    GLOBAL_STATE = ("order", "both use process-wide state (pyplot, random seeds, mlflow...)")
    PINNED_IMPORT = ("order", "imports a module the task writes, or after its sys.path change")
    AFTER_TAG = ("after", "an after: tag")

    def __init__(self, kind: EdgeKind, description: str) -> None:
        self.kind: EdgeKind = kind
        self.description = description

    @property
    def label(self) -> str:
        """Short name for messages: ``in-place``, ``file``..."""
        return self.name.lower().replace("_", "-")


_RANK: dict[str, int] = {"data": 0, "after": 1, "order": 2}


@dataclass(frozen=True)
class Reason:
    rule: Rule
    var: str | None  # the variable, file or global (None for an after: tag)


@dataclass(frozen=True)
class Edge:
    """``target`` runs after ``source``, for ``reasons`` (in the order they were found)."""

    source: str
    target: str
    reasons: tuple[Reason, ...]

    @property
    def kind(self) -> EdgeKind:
        """The strongest kind of its reasons: data, else after, else order."""
        return min((r.rule.kind for r in self.reasons), key=_RANK.__getitem__)

    @property
    def vars(self) -> tuple[str, ...]:
        """Variables (files, globals) along the edge, first-found first, each once."""
        return tuple(dict.fromkeys(r.var for r in self.reasons if r.var))


# -- the plan ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Param:
    """A flow parameter: a literal assignment of a ``parameters`` cell."""

    name: str
    default: str  # a literal, as source
    hint: str | None
    cell: int  # the last parameters cell setting it
    cells: tuple[int, ...]  # every parameters cell setting it


@dataclass(frozen=True)
class ModuleBlock:
    """Code of the script outside the tasks, in notebook order: at module level, or in the
    flow's setup function (``in_setup``)."""

    cell: int
    #: definitions (imports, def, class), a ``setup`` cell, or configuration statements
    #: moved out of a task cell (``plt.style.use(...)``: see hoisting.configuration)
    kind: Literal["definitions", "setup", "configuration"]
    code: str
    doc: str  # markdown above it (rendered as comments)
    in_setup: bool = False  # setup and configuration always; definitions that need them


@dataclass(frozen=True)
class SetupFunction:
    """The flow's setup (``@flow(setup=...)``): the blocks ``in_setup``, run once per flow
    run in every process that runs its tasks, before them, never at import."""

    parameters: tuple[str, ...]  # flow parameters it reads, in order
    globals: tuple[str, ...]  # module-level names it binds


Option = float | int | bool


@dataclass(frozen=True)
class PlannedTask:
    name: str  # the task's name (runs, logs)
    func: str  # the script's function name (never shadows a name the code uses)
    cells: tuple[int, ...]
    doc: str
    code: str  # the body, hoisted imports and moved functions removed
    inputs: tuple[str, ...]  # the function's parameters, in order
    sources: Mapping[str, Source]  # input -> where its value comes from
    outputs: tuple[str, ...]  # what it returns: names later tasks or the flow read
    #: names the body declares global (functions of the task set them with `global`, or
    #: notebook functions it calls read them)
    globals: tuple[str, ...]
    maybe_unbound: tuple[str, ...]  # outputs it may leave unbound (returned as UNSET)
    maybe_unbound_inputs: tuple[str, ...]  # inputs that may arrive as UNSET
    options: Mapping[str, Option]  # retries, retry_delay_seconds, timeout_seconds, cache
    after: tuple[str, ...]  # task names of its after: tags
    shows: tuple[int, ...] = ()  # cells whose displayed value it records (an artifact)


@dataclass(frozen=True)
class Plan:
    notebook: str  # how the header names the notebook
    sha256: str
    flow_name: str
    flow_doc: str
    flow_summary: str  # the title cell (module docstring)
    parameters_doc: str
    split: str  # the mode used
    requested_split: str
    cache_all: bool
    parameters: tuple[Param, ...]
    module: tuple[ModuleBlock, ...]
    setup: SetupFunction | None  # None: the flow has no setup
    imports: tuple[str, ...]  # import statements for the top of the script
    needs: tuple[str, ...]  # modules translated magics use
    imports_written_files: bool  # the notebook imports a module it writes
    module_names: tuple[str, ...]  # names bound at module level (sorted)
    star_imports: tuple[str, ...]
    used_names: tuple[str, ...]  # every name the code reads or binds (sorted)
    tasks: Mapping[str, PlannedTask]  # in call order
    outputs: Mapping[str, str]  # what the flow returns: name -> the task making it
    #: how they were chosen: "output: tags", "--outputs", "shown by cell N", or why none
    outputs_rule: str
    #: every value the notebook leaves (what `nb2flow check` compares): name -> the task
    #: making its final version, in the order the notebook first sets them
    finals: Mapping[str, str]
    outputs_option: tuple[str, ...] | None  # the variables --outputs named (None: not given)
    every_value: bool  # tasks also return every final value they make (for nb2flow check)
    #: the script's name for nb2flow.artifacts (None: no task records a displayed value)
    artifacts: str | None
    skipped: tuple[int, ...]
    warnings: tuple[str, ...]
    graph: nx.DiGraph  # task names; each edge's "edge" attribute is its Edge
    #: every top-level statement of the cells that enter the flow, as analysis parsed it,
    #: with its cell number, in notebook order: the source map finds them in the script
    statements: tuple[tuple[int, ast.stmt], ...] = ()

    @property
    def order(self) -> tuple[str, ...]:
        """Task names in call order (topological, notebook order as tie-break)."""
        return tuple(self.tasks)

    def edge(self, source: str, target: str) -> Edge:
        edge: Edge = self.graph.edges[source, target]["edge"]
        return edge

    def has_edge(self, source: str, target: str) -> bool:
        return bool(self.graph.has_edge(source, target))

    def edges(self) -> list[Edge]:
        """Every edge, by the call position of its target, then of its source."""
        position = {name: i for i, name in enumerate(self.tasks)}
        edges: list[Edge] = [data["edge"] for _, _, data in self.graph.edges(data=True)]
        return sorted(edges, key=lambda e: (position[e.target], position[e.source]))

    def predecessors(self, name: str) -> list[str]:
        return list(self.graph.predecessors(name))

    def returned_by(self) -> dict[str, tuple[str, int, int]]:
        """Where a run's task outputs hold the notebook's final values: name -> (task, its
        position in what the task returns, how many it returns), for those a task returns
        (all of them with ``every_value``)."""
        out: dict[str, tuple[str, int, int]] = {}
        for name, task in self.finals.items():
            outputs = self.tasks[task].outputs
            if name in outputs:
                out[name] = (task, outputs.index(name), len(outputs))
        return out
