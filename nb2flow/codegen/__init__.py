"""Notebook -> flow script: the converter's in-process API.

>>> conversion = convert_notebook("notebooks/duration-prediction.ipynb")
>>> conversion.script        # the script text
>>> conversion.plan          # nb2flow.analysis.plan.Plan: tasks, edges, parameters...
>>> conversion.output_names  # what the flow returns
>>> conversion.final_names   # every value the notebook leaves (what `nb2flow check` compares)
>>> write_script(conversion, "converted_scripts")
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from nb2flow.errors import Nb2flowError, where
from nb2flow.generated import MARKER, RESERVED_PARAMETERS, installation_roots, is_generated
from nb2flow.notebook.identifiers import identifier
from nb2flow.notebook.reader import Notebook

if TYPE_CHECKING:
    from nb2flow.analysis.plan import Param, Plan, PlannedTask

__all__ = [
    "Conversion",
    "convert_notebook",
    "module_name",
    "script_path",
    "source_label",
    "write_script",
]

DEFAULT_OUTPUT_DIR = "converted_scripts"


@dataclass
class Conversion:
    """The result of converting one notebook."""

    notebook: Path
    script: str
    plan: Plan
    warnings: list[str] = field(default_factory=list)
    output_names: list[str] = field(default_factory=list)
    #: every value the notebook leaves, in the order it first sets them
    final_names: list[str] = field(default_factory=list)
    #: the folder the script was made for (it runs in the notebook's folder, relative to it)
    out_dir: Path = Path(DEFAULT_OUTPUT_DIR)
    #: the notebook as read (None: read from ``notebook``)
    source: Notebook | None = None

    def for_folder(self, out_dir: str | Path) -> Conversion:
        """The same conversion made for a script in ``out_dir``."""
        if Path(out_dir).resolve() == self.out_dir.resolve():
            return self
        return _conversion(self.notebook, self.plan, out_dir, self.source)

    @property
    def module_name(self) -> str:
        return module_name(self.notebook)

    @property
    def tasks(self) -> list[PlannedTask]:
        """The planned tasks in call order."""
        return list(self.plan.tasks.values())


def module_name(notebook: str | Path) -> str:
    """``notebooks/duration-prediction.ipynb`` -> ``duration_prediction``.

    A notebook named like a module (``json.ipynb``, ``logging``, ``nb2flow``, any module
    of the standard library or of an installed package) gets ``_flow`` appended
    (``json_flow``): a script's folder comes first on ``sys.path`` when it runs, so a
    script named ``json.py`` would be imported in place of ``json`` and could not start."""
    name = identifier(Path(notebook).stem, fallback="notebook")
    while is_module_name(name):
        name += "_flow"
    return name


def is_module_name(name: str) -> bool:
    """Whether ``import name`` finds a module of the Python installation (the standard
    library, site-packages; never the working directory) or nb2flow itself."""
    import importlib.machinery
    import sys

    if name in sys.stdlib_module_names or name in sys.builtin_module_names or name == "nb2flow":
        return True
    return importlib.machinery.PathFinder.find_spec(name, list(installation_roots())) is not None


def script_path(notebook: str | Path, out_dir: str | Path = DEFAULT_OUTPUT_DIR) -> Path:
    return Path(out_dir) / f"{module_name(notebook)}.py"


def source_label(path: str | Path, base: str | Path | None = None) -> str:
    """How the header names the notebook: relative to ``base`` (default: the current
    directory) when it lies inside it, else the absolute path; always with ``/``."""
    resolved = Path(path).resolve()
    root = Path(base).resolve() if base is not None else Path.cwd().resolve()
    try:
        return resolved.relative_to(root).as_posix()
    except ValueError:
        return resolved.as_posix()


def notebook_folder(notebook: str | Path, out_dir: str | Path) -> str:
    """The notebook's folder relative to ``out_dir`` (``/``-separated): where the script
    written there runs (the relative-path rule, docs/converter.md)."""
    folder = Path(os.path.relpath(Path(notebook).resolve().parent, Path(out_dir).resolve()))
    return folder.as_posix()


def convert_notebook(
    path: str | Path | Notebook,
    *,
    split: str = "auto",
    cache_all: bool = False,
    label: str | None = None,
    out_dir: str | Path = DEFAULT_OUTPUT_DIR,
    outputs: Sequence[str] | None = None,
    every_value: bool = False,
) -> Conversion:
    """Convert the notebook at ``path`` (or a :class:`Notebook` read already, e.g. the unsaved
    content of an open notebook) for a script in ``out_dir``; raises Nb2flowError on bad
    input, writes nothing.

    ``outputs``: the variables the flow returns (default: the notebook's ``output:NAME``
    tags, else what its last cell showing values shows). ``every_value``: each task also
    returns every value the notebook leaves that it makes, so that a run keeping its task
    outputs (``keep_outputs``) holds them all (``nb2flow check``)."""
    from nb2flow.analysis.pipeline import build_plan, paused_gc

    nb = path if isinstance(path, Notebook) else None
    path = path.path if isinstance(path, Notebook) else Path(path)
    with paused_gc():  # one pause for both: each pause ends in a scan of what it made
        plan = build_plan(
            nb if nb is not None else path,
            split=split,
            cache_all=cache_all,
            label=label if label else source_label(path),
            outputs=outputs,
            every_value=every_value,
        )
        return _conversion(path, plan, out_dir, nb)


def _conversion(path: Path, plan: Plan, out_dir: str | Path, nb: Notebook | None) -> Conversion:
    import ast

    from nb2flow.analysis.pipeline import paused_gc
    from nb2flow.codegen.formatting import format_code
    from nb2flow.codegen.script import render
    from nb2flow.codegen.source_map import source_map

    notes = _parameter_notes(path, plan.parameters)
    with paused_gc():  # (the script's syntax tree is large: see paused_gc)
        formatted, problem = format_code(render(plan, notebook_folder(path, out_dir)))
        try:
            # the formatted text, parsed once: compiled (a check), then mapped to the cells
            tree = ast.parse(formatted)
            compile(tree, str(script_path(path)), "exec")
        except SyntaxError as exc:  # a converter bug, or code only a notebook accepts
            _raise_for_cell(nb if nb is not None else path)
            raise Nb2flowError(
                f"{where(path)}: the generated script does not compile (line {exc.lineno}: "
                f"{exc.msg}); please report this with the notebook"
            ) from None
        # which cell each line comes from, for errors told in the notebook's terms
        formatted += source_map(tree, plan.statements, plan.notebook)
    warnings = list(plan.warnings) + notes
    plain = identifier(path.stem, fallback="notebook")
    if module_name(path) != plain:
        warnings.append(
            f"{where(path)}: the script is {module_name(path)}.py, not {plain}.py: "
            f"`{plain}` is the name of a module it could import in its own place"
        )
    if problem:
        warnings.append(problem)
    return Conversion(
        notebook=path,
        script=formatted,
        plan=plan,
        warnings=warnings,
        output_names=list(plan.outputs),
        final_names=list(plan.finals),
        out_dir=Path(out_dir),
        source=nb,
    )


def _parameter_notes(path: Path, parameters: Sequence[Param]) -> list[str]:
    """Refuse a parameter named like a keyword of the flow call (``return_state``); a
    warning for each parameter whose command-line option is ``--param-<name>`` because
    its own would be one of the script's options."""
    from nb2flow.runtime.cli.parser import parameter_options

    for p in parameters:
        if p.name in RESERVED_PARAMETERS:
            raise Nb2flowError(
                f"{where(path, p.cell)}: parameter `{p.name}` is a name the flow call takes "
                f"for itself (main(..., {p.name}=True) returns the run); rename it"
            )
    options = parameter_options([(p.name, p.hint == "bool") for p in parameters])
    return [
        f"{where(path, p.cell)}: parameter `{p.name}` is {options[p.name]} on the script's "
        f"command line (--{p.name.replace('_', '-')} is taken)"
        for p in parameters
        if options[p.name] != "--" + p.name.replace("_", "-")
    ]


def _raise_for_cell(path: Path | Notebook) -> None:
    """Compile every code cell alone; raise the error of the first that fails, if any."""
    from nb2flow.notebook.magics import to_python
    from nb2flow.notebook.reader import read_notebook

    nb = path if isinstance(path, Notebook) else read_notebook(path)
    path = nb.path
    for cell in nb.cells:
        if cell.kind != "code":
            continue
        try:
            compile(to_python(cell.source, "").code, f"cell {cell.number}", "exec")
        except SyntaxError as exc:
            raise Nb2flowError(
                f"{where(path, cell.number, exc.lineno)}: syntax error: {exc.msg}"
            ) from None


def write_script(
    conversion: Conversion,
    out_dir: str | Path = DEFAULT_OUTPUT_DIR,
    *,
    force: bool = False,
) -> Path:
    """Write the script into ``out_dir`` atomically (temp file + rename); returns its path.

    Refuses to overwrite a file that nb2flow did not generate unless ``force``.
    """
    directory = Path(out_dir)
    target = script_path(conversion.notebook, directory)
    conversion = conversion.for_folder(directory)
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise Nb2flowError(
            f"{directory}: cannot create the output directory ({exc.strerror})"
        ) from None
    root = directory.resolve()
    resolved = target.resolve()
    if resolved.parent != root:
        raise Nb2flowError(f"{target}: the output path is outside {directory}")
    if target.is_dir():
        raise Nb2flowError(f"{target}: is a directory")
    if target.exists() and not force and not is_generated(target):
        raise Nb2flowError(
            f"{target}: exists and was not generated by nb2flow (no `{MARKER}` line); "
            "use --force to overwrite it"
        )
    try:
        atomic_write(resolved, conversion.script)
    except OSError as exc:
        raise Nb2flowError(f"{target}: cannot write ({exc.strerror or exc})") from None
    return target


def atomic_write(
    path: Path, text: str, mode: int = 0o644, *, like: os.stat_result | None = None
) -> None:
    """Write ``text`` to a temporary file beside ``path``, then rename it over ``path``:
    readers see the old file or the new one, never half of one, and an error leaves the
    old file as it was.

    ``like`` (the stat of the file being replaced) keeps its mode, its group and, where
    allowed (root), its owner, as ``sed -i`` does; a group that cannot be kept (not one of
    ours) raises PermissionError before anything is replaced.
    """
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as fh:
            fh.write(text)
        if like is not None:
            _keep_owner(tmp, like)
            mode = like.st_mode & 0o7777
        os.chmod(tmp, mode)  # after chown, which clears the setgid bit
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def _keep_owner(tmp: str, like: os.stat_result) -> None:
    try:
        os.chown(tmp, like.st_uid, like.st_gid)
    except PermissionError:  # only root gives files away; the group is what must stay
        try:
            os.chown(tmp, -1, like.st_gid)
        except PermissionError as exc:
            raise PermissionError(
                exc.errno, f"cannot keep its group {_group_name(like.st_gid)}"
            ) from None


def _group_name(gid: int) -> str:
    import grp

    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return str(gid)
