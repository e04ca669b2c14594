"""Plan -> script text (the shape is fixed in docs/ARCHITECTURE.md).

Everything taken from the notebook that is not the user's own code (task names, the
notebook path, markdown) enters the script as a string literal made by ``repr`` or as an
identifier made by :func:`nb2flow.notebook.identifiers.identifier`, so it can never become
code.
"""

from __future__ import annotations

import ast
from collections.abc import Mapping

from nb2flow.analysis.names import BUILTIN_NAMES
from nb2flow.analysis.plan import (
    CELL_END,
    SCRIPT_NAMES,
    FromModule,
    FromParameter,
    FromTask,
    Param,
    Plan,
    PlannedTask,
    Source,
)
from nb2flow.generated import MARKER
from nb2flow.notebook.identifiers import unique
from nb2flow.notebook.markdown import markdown_comment

_DISPLAY_STANDIN = '''
def display(*objs, **kwargs):
    """Stand-in for IPython's display() outside Jupyter: each object is recorded as an
    output of the running task (nb2flow show, the panel, the report), as the notebook
    showed it; printed when no run records it."""
    nb2flow.artifacts.ipython_display(*objs, **kwargs)
'''

_WORKING_DIRECTORY_ON_PATH = """
# The notebook imports modules it writes: like Jupyter, look for them in the working directory.
if "" not in sys.path:
    sys.path.insert(0, "")
"""

_OPTION_ORDER = ("retries", "retry_delay_seconds", "timeout_seconds", "cache")


#: what the script does first when run: go where the notebook's kernel runs
_RUN_IN_FOLDER = """
if __name__ == "__main__":
    # Run in the notebook's folder, as Jupyter runs the notebook: relative paths in the code
    # and on the command line resolve there (--cwd DIR runs the flow in DIR instead).
    {deco}run_in_folder(__file__, {folder!r})
"""


def render(plan: Plan, folder: str = ".") -> str:
    """The unformatted script for ``plan`` (from :func:`nb2flow.analysis.build_plan`);
    ``folder`` is the notebook's folder relative to the script's (``/``-separated), where the
    script runs."""
    tasks = list(plan.tasks.values())
    module_names = set(plan.module_names)
    used = set(plan.used_names)
    # UNSET stands for a name a task may leave unbound (only scripts that need it import it).
    unset = any(t.maybe_unbound or t.maybe_unbound_inputs for t in tasks)
    # The decorators come in as `flow`, `task`, `run_cli`, unless the notebook uses those names.
    clash = bool(used & {"flow", "task", "run_cli", "run_in_folder", *(["UNSET"] * unset)})
    deco = "_nb2flow." if clash else ""
    flow_func = "main" if "main" not in module_names else unique("flow_main", set(used))
    setup_func = None
    if plan.setup is not None:
        taken = used | module_names | {t.func for t in tasks} | {flow_func}
        setup_func = unique("setup", taken | {p.name for p in plan.parameters} | SCRIPT_NAMES)
        module_names = module_names | {setup_func}

    out: list[str] = [_header(plan), MARKER, ""]
    imports = [f"import {m}" for m in plan.needs if f"import {m}" not in plan.imports]
    imports += plan.imports
    future = [i for i in imports if i.startswith("from __future__")]
    if future:  # they must come first
        out.extend([*future, ""])
        imports = [i for i in imports if i not in future]
    out.extend(_preflight(plan, used | module_names))
    out.extend(imports)
    if imports:
        out.append("")
    # tasks that record the cells' displayed values use nb2flow.artifacts
    artifacts = []
    if plan.artifacts is not None:
        alias = "" if plan.artifacts == "artifacts" else f" as {plan.artifacts}"
        artifacts.append(f"artifacts{alias}")
    if clash:
        out.append("import nb2flow as _nb2flow")
        if artifacts:
            out.append(f"from nb2flow import {artifacts[0]}")
    else:
        names = [*artifacts, *(["UNSET"] * unset), "flow", "run_cli", "run_in_folder", "task"]
        out.append(f"from nb2flow import {', '.join(names)}")
    reads_display = "display" in used and "display" not in module_names
    display_standin = reads_display and not any("display" in t.outputs for t in tasks)
    artifacts_used = display_standin or any(CELL_END in t.code for t in tasks)
    if artifacts_used and "import nb2flow.artifacts" not in imports:  # (or %%capture's)
        out.append("import nb2flow.artifacts")
    out.append("")
    out.append(_RUN_IN_FOLDER.format(deco=deco, folder=folder))
    if plan.imports_written_files:
        out.append(_WORKING_DIRECTORY_ON_PATH)
    if display_standin:
        out.append(_DISPLAY_STANDIN)
    for block in plan.module:
        if block.code.strip() and not block.in_setup:
            out.append("")
            if block.doc:
                out.append(markdown_comment(block.doc))
            out.append(block.code.rstrip())
            out.append("")
    params = {p.name: p for p in plan.parameters}
    if setup_func is not None:
        out.append("")
        out.append(_setup(plan, setup_func, params))
        out.append("")
    for t in tasks:
        out.append("")
        out.append(_task(t, params, deco))
    out.append("")
    out.append(_flow(plan, tasks, params, deco, flow_func, module_names, setup_func))
    out.append("")
    out.append('if __name__ == "__main__":')
    out.append(f"    {deco}run_cli({flow_func})")
    return "\n".join(out) + "\n"


#: type hints the command line can read before the script's imports ran
_EARLY_HINTS = frozenset({"bool", "int", "float", "str", "list", "dict", "tuple", "set", "None"})


def _preflight(plan: Plan, taken: set[str]) -> list[str]:
    """The block that answers ``--help`` and bad options before the notebook's imports and
    setup run (:func:`nb2flow.runtime.cli.preflight.preflight_cli`): the flow's signature,
    which the parameters cell fixes (literal defaults). Left out when a type hint names
    something the imports bring (the options would read differently before them)."""
    sig = []
    for p in plan.parameters:
        if p.hint:
            names = {
                n.id for n in ast.walk(ast.parse(p.hint, mode="eval")) if isinstance(n, ast.Name)
            }
            if not names <= _EARLY_HINTS:
                return []
        sig.append(f"{p.name}{f': {p.hint}' if p.hint else ''} = {p.default}")
    stub = unique("flow_parameters", taken)
    lines = [
        'if __name__ == "__main__":',
        "    # Answer --help and bad options now, before the imports below run.",
    ]
    if "preflight_cli" in taken:
        lines.append("    import nb2flow as _nb2flow")
        call = "_nb2flow.preflight_cli"
    else:
        lines.append("    from nb2flow import preflight_cli")
        call = "preflight_cli"
    lines.append("")
    lines.append(f"    def {stub}({', '.join(sig)}):")
    title = next((line.strip() for line in plan.flow_doc.splitlines() if line.strip()), "")
    lines.append(f"        {_string_literal(title) if title else '...'}")
    lines.append("")
    lines.append(f"    {call}({stub}, {plan.flow_name!r})")
    lines.append("")
    return lines


def _header(plan: Plan) -> str:
    label = plan.notebook
    command = regenerate_command(label, plan.requested_split, plan.cache_all, plan.outputs_option)
    lines = [f"Flow generated by nb2flow from {label}.", ""]
    if plan.flow_summary:
        lines += [plan.flow_summary, ""]  # the notebook's title cell
    lines += [
        f"Source: {label} (sha256 {plan.sha256})",
        f"Re-generate with: {command}",
    ]
    return _string_literal("\n".join(lines) + "\n")


def regenerate_command(
    label: str, split: str, cache_all: bool, outputs: tuple[str, ...] | None = None
) -> str:
    """The command line that makes this script again (the golden test runs it)."""
    import shlex

    words = ["nb2flow", "convert", label]
    if split != "auto":
        words += ["--split", split]
    if cache_all:
        words.append("--cache")
    if outputs is not None:
        words += ["--outputs", ",".join(outputs)]
    return shlex.join(words)


def _string_literal(text: str) -> str:
    """A docstring literal for ``text``: triple-quoted when that is exact, else ``repr``."""
    safe = (
        '"""' not in text
        and not text.endswith(('"', "\\"))
        and all(ch.isprintable() or ch in "\n\t" for ch in text)
    )
    if safe:
        # raw when it holds backslashes (LaTeX in markdown), so they stay as written
        return f'r"""{text}"""' if "\\" in text else f'"""{text}"""'
    return repr(text)


def _task(t: PlannedTask, params: Mapping[str, Param], deco: str) -> str:
    options = [f"name={t.name!r}"]
    if len(t.outputs) >= 2:
        options.append(f"nout={len(t.outputs)}")
    for key in _OPTION_ORDER:
        if key in t.options:
            options.append(f"{key}={t.options[key]!r}")
    args = []
    declared = t.globals
    for name in t.inputs:
        hint = params[name].hint if isinstance(t.sources[name], FromParameter) else None
        # a name the task's functions set with `global` is global in the task too: its value
        # comes in under another name (a parameter cannot be global)
        arg = f"_nb2flow_{name}" if name in declared else name
        args.append(f"{arg}: {hint}" if hint else arg)
    lines = [f"@{deco}task({', '.join(options)})", f"def {t.func}({', '.join(args)}):"]
    doc = t.doc.strip()
    if doc:
        lines.append(_indent(_string_literal(doc + ("\n" if "\n" in doc else ""))))
    if declared:
        lines.append(f"    global {', '.join(declared)}")
        lines.extend(f"    {n} = _nb2flow_{n}" for n in t.inputs if n in declared)
    # An input the notebook may have left unbound arrives as UNSET: unbind it, so that
    # reading it raises NameError (UnboundLocalError) as in the notebook.
    for name in t.maybe_unbound_inputs:
        lines.append(f"    if {name} is {deco}UNSET:")
        lines.append(f"        del {name}")
    body = t.code.strip("\n")
    if body.strip():
        lines.append(_indent(body))
    if t.outputs:
        # A name the task may leave unbound (bound on some paths only, deleted) is returned
        # as UNSET when it is unbound.
        maybe = set(t.maybe_unbound)
        scope = {name: "globals" if name in t.globals else "locals" for name in maybe}
        values = [f"{scope[o]}().get({o!r}, {deco}UNSET)" if o in maybe else o for o in t.outputs]
        lines.append(f"    return {', '.join(values)}")
    elif not body.strip() or not ast.parse(body).body:
        if not doc:
            lines.append("    pass")
    return "\n".join(lines)


def _setup(plan: Plan, func: str, params: Mapping[str, Param]) -> str:
    """The flow's setup function (``@flow(setup=...)``): the blocks ``in_setup``, in
    notebook order, binding module globals."""
    assert plan.setup is not None
    args = []
    for name in plan.setup.parameters:
        hint = params[name].hint
        args.append(f"{name}: {hint}" if hint else name)
    lines = [
        f"def {func}({', '.join(args)}):",
        _indent(
            _string_literal(
                "Setup: run once in every process that runs the flow's tasks, before them "
                "(the flow\nprocess, each worker), never at import."
            )
        ),
    ]
    if plan.setup.globals:
        lines.append(f"    global {', '.join(plan.setup.globals)}")
    for block in plan.module:
        if not block.in_setup or not block.code.strip():
            continue
        lines.append("")
        what = {"setup": "setup cell", "configuration": "configuration from cell"}
        label = f"{what.get(block.kind, 'definitions of cell')} {block.cell}"
        doc = f"{block.doc}\n\n({label})" if block.doc else f"({label})"
        lines.append(_indent(markdown_comment(doc)))
        lines.append(_indent(block.code.rstrip()))
    return "\n".join(lines)


def _indent(code: str) -> str:
    """Indent by four spaces, except lines inside multi-line strings (that would change them)."""
    tree = None
    if '"""' in code or "'''" in code or "\\\n" in code:  # else no string spans lines
        try:
            tree = ast.parse(code)
        except SyntaxError:
            tree = None
    inside: set[int] = set()
    if tree is not None:
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant | ast.JoinedStr) and node.end_lineno != node.lineno:
                inside.update(range(node.lineno + 1, (node.end_lineno or node.lineno) + 1))
    lines = code.split("\n")
    return "\n".join(
        line if (i + 1 in inside or not line.strip()) else "    " + line
        for i, line in enumerate(lines)
    )


def _flow(
    plan: Plan,
    tasks: list[PlannedTask],
    params: Mapping[str, Param],
    deco: str,
    flow_func: str,
    module_names: set[str],
    setup_func: str | None,
) -> str:
    position = {t.name: i for i, t in enumerate(tasks)}
    taken = set(params) | {t.func for t in tasks} | module_names | BUILTIN_NAMES | SCRIPT_NAMES
    versions = _Versions(plan, tasks, position, taken)
    waits = _waits(plan, position)
    refs, future_var = _wait_references(plan, waits, versions, position, taken)

    sig = []
    for p in plan.parameters:
        hint = f": {p.hint}" if p.hint else ""
        sig.append(f"{p.name}{hint} = {p.default}")
    setup = f", setup={setup_func}" if setup_func is not None else ""
    lines = [
        f"@{deco}flow(name={plan.flow_name!r}{setup})",
        f"def {flow_func}({', '.join(sig)}) -> dict:",
    ]
    flow_doc = "\n\n".join(d for d in (plan.flow_doc, plan.parameters_doc) if d)
    if flow_doc:
        lines.append(_indent(_string_literal(flow_doc + "\n")))
    steps: list[tuple[list[str], list[str], list[str]]] = []  # (lines, uses, binds)
    for t in tasks:
        uses = [versions.ref(name, t.sources[name]) for name in t.inputs]
        args = list(uses)
        if t.name in refs:
            uses += refs[t.name]
            args.append(f"wait_for=[{', '.join(refs[t.name])}]")
        call = f"{t.func}.submit({', '.join(args)})"
        outs = [versions.local[(name, t.name)] for name in t.outputs]
        if t.name in future_var:
            fut = future_var[t.name]
            step = [f"{fut} = {call}"]
            if outs:
                step.append(f"{', '.join(outs)} = {fut}")
            steps.append((step, uses, [fut, *outs]))
        else:
            steps.append(([f"{', '.join(outs)} = {call}" if outs else call], uses, outs))
    returned = {versions.local[(name, task)]: name for name, task in plan.outputs.items()}
    body: list[str] = []
    for lines_of_step, released in zip(
        (step[0] for step in steps), _releases(steps, set(returned)), strict=True
    ):
        body.extend(lines_of_step)
        if released:
            # the futures keep their values alive: let go of those nothing later reads (each
            # value then goes when the tasks reading it end, not when the flow does)
            body.append(f"del {', '.join(released)}")
    items = ", ".join(f"{name!r}: {var}" for var, name in returned.items())
    body.append(f"return {{{items}}}")
    lines.extend("    " + line for line in body)
    return "\n".join(lines)


def _releases(
    steps: list[tuple[list[str], list[str], list[str]]], returned: set[str]
) -> list[list[str]]:
    """For each step of the flow body (its lines, the variables it reads, those it binds):
    the variables bound by tasks that no later step reads, to delete after it. A binding
    the next binding of the same variable reads replaces it anyway; one never read (only
    with ``every_value``, for nb2flow check, which keeps every output) is left alone, and so
    are the flow's returns and parameters."""
    bound: dict[str, int] = {}  # variable -> the step that first binds it (for the order)
    last_read: dict[str, int] = {}  # variable -> the last step reading its current binding
    out: list[list[str]] = [[] for _ in steps]
    for i, (_, uses, binds) in enumerate(steps):
        for var in uses:
            if var in bound:
                last_read[var] = i
        for var in binds:
            read = last_read.pop(var, None)
            if read is not None and read != i:
                out[read].append(var)
            bound.setdefault(var, i)
    for var, read in last_read.items():
        if var not in returned:
            out[read].append(var)
    rank = {var: i for i, var in enumerate(bound)}  # (several may bind in one step)
    return [sorted(set(vs), key=rank.__getitem__) for vs in out]


class _Versions:
    """The flow function's variable for each version (name, producing task) of a value.

    In notebook order the plain name is always right; when after: tags reorder calls, a
    version still needed after another task rebinds the name gets a name of its own."""

    def __init__(
        self, plan: Plan, tasks: list[PlannedTask], position: dict[str, int], taken: set[str]
    ) -> None:
        self.local: dict[tuple[str, str], str] = {}
        # name -> [(position, producer)], by position (tasks come in call order)
        self.binds: dict[str, list[tuple[int, str]]] = {}
        for t in tasks:
            for name in t.outputs:
                self.binds.setdefault(name, []).append((position[t.name], t.name))
        parameters = {p.name for p in plan.parameters}
        last_use: dict[tuple[str, Source], int] = {}
        for t in tasks:
            for name, source in t.sources.items():
                if not isinstance(source, FromModule):
                    key = (name, source)
                    last_use[key] = max(last_use.get(key, -1), position[t.name])
        for name, task in plan.outputs.items():
            last_use[(name, FromTask(task))] = len(tasks)
        for name, binds in self.binds.items():
            # a task version of a parameter's name must not hide the parameter from a task
            # that reads it later (a parameters cell below the task that sets the name)
            param_end = -1
            if name in parameters:
                param_end = last_use.get((name, FromParameter()), -1)
            for pos, producer in binds:
                end = last_use.get((name, FromTask(producer)), pos)
                clobbered = pos < param_end or any(pos < other < end for other, _ in binds)
                self.local[(name, producer)] = (
                    unique(f"{name}_{producer}", taken) if clobbered else name
                )
        self.bound_in_main = set(self.local.values())

    def ref(self, name: str, source: Source) -> str:
        """How the flow function names the value ``source`` gives for ``name``."""
        match source:
            case FromParameter():
                return name
            case FromModule():
                return f"globals()[{name!r}]" if name in self.bound_in_main else name
            case FromTask(task=task):
                return self.local[(name, task)]


def _waits(plan: Plan, position: dict[str, int]) -> dict[str, list[str]]:
    """Task -> the tasks it must wait for without taking data from them: its order and
    after: edges that no data path implies."""
    import networkx as nx

    waits: dict[str, list[str]] = {}
    data_only = nx.DiGraph()
    data_only.add_nodes_from(plan.graph.nodes)
    data_only.add_edges_from((e.source, e.target) for e in plan.edges() if e.kind == "data")
    for e in plan.edges():
        if e.kind == "data" or nx.has_path(data_only, e.source, e.target):
            continue
        waits.setdefault(e.target, []).append(e.source)
        data_only.add_edge(e.source, e.target)
    return waits


def _wait_references(
    plan: Plan,
    waits: dict[str, list[str]],
    versions: _Versions,
    position: dict[str, int],
    taken: set[str],
) -> tuple[dict[str, list[str]], dict[str, str]]:
    """Which future does a waiter name? An output of the awaited task still bound, else the
    task's whole future, kept in a variable of its own. Returns (waiter -> references,
    task -> its future's variable)."""
    needs_future: set[str] = set()
    chosen: dict[str, list[tuple[str, str | None]]] = {}  # waiter -> [(task, variable)]
    for b, sources in waits.items():
        for a in sources:
            choice = None
            for name in plan.tasks[a].outputs:
                var = versions.local[(name, a)]
                rebinding = [
                    p
                    for p, prod in versions.binds.get(name, [])
                    if versions.local[(name, prod)] == var and prod != a
                ]
                if not any(position[a] < p < position[b] for p in rebinding):
                    choice = var
                    break
            if choice is None:
                needs_future.add(a)
            chosen.setdefault(b, []).append((a, choice))
    future_var = {
        a: unique(f"{plan.tasks[a].func}_future", taken | versions.bound_in_main)
        for a in sorted(needs_future)
    }
    refs = {b: [var or future_var[a] for a, var in pairs] for b, pairs in chosen.items()}
    return refs, future_var
