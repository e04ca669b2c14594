"""``nb2flow check``: prove a conversion by running both sides and comparing their values.

:func:`check_notebook` converts the notebook, runs it top to bottom in a Jupyter kernel
(``skip`` cells left out), runs the generated flow with the same parameters, and compares
every value the notebook leaves with the flow's (:mod:`nb2flow.check.compare`). The flow
returns only what the user asked for; the other values come from its task runs' outputs
(the runtime's ``keep_outputs``: :mod:`nb2flow.check.values`).

A value that differs is checked against a second run of the notebook: when the notebook
itself does not compute it twice the same (unseeded randomness, ``id()`` inside an object),
it is reported *nondeterministic in the notebook* and does not fail the check.
"""

from __future__ import annotations

import ast
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nb2flow.check.compare import DIFFERENT, EQUAL, NOT_COMPARED, Tolerance, compare, type_name
from nb2flow.errors import Nb2flowError

if TYPE_CHECKING:
    from nb2flow.codegen import Conversion

__all__ = [
    "DIFFERENT",
    "EQUAL",
    "IGNORED",
    "MISSING_IN_FLOW",
    "MISSING_IN_NOTEBOOK",
    "NONDETERMINISTIC",
    "NOT_COMPARED",
    "REPEAT_CHOICES",
    "CheckReport",
    "ValueRow",
    "check_notebook",
    "parse_parameters",
]

#: row statuses, besides compare's EQUAL / DIFFERENT / NOT_COMPARED
MISSING_IN_FLOW = "missing in flow"
MISSING_IN_NOTEBOOK = "missing in notebook"
IGNORED = "ignored"
NONDETERMINISTIC = "nondeterministic in the notebook"
FAILING = (DIFFERENT, MISSING_IN_FLOW, MISSING_IN_NOTEBOOK)
#: the statuses that count as a value compared
COMPARED = (EQUAL, DIFFERENT)

#: ``--repeat-notebook``: run the notebook a second time when values differ (auto), for
#: every value (always), or never
REPEAT_CHOICES = ("auto", "always", "never")

#: report verdicts
PASS, FAIL, NOTHING_COMPARED = "pass", "fail", "nothing compared"


@dataclass
class ValueRow:
    name: str
    status: str
    detail: str = ""
    type: str = ""


@dataclass
class CheckReport:
    notebook: str
    script: str = ""
    parameters: dict[str, str] = field(default_factory=dict)
    rows: list[ValueRow] = field(default_factory=list)
    notebook_error: str | None = None
    flow_error: str | None = None
    #: side -> why it did not finish ("stopped: the notebook failed first", "not run: ...")
    skipped: dict[str, str] = field(default_factory=dict)
    conversion_warnings: list[str] = field(default_factory=list)
    #: what the flow itself returns (the values compared come from its task runs)
    flow_returns: list[str] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)
    #: how often the notebook ran, and why a second time
    notebook_runs: int = 1
    repeat: str = "auto"
    notes: list[str] = field(default_factory=list)

    @property
    def compared(self) -> int:
        """How many values were compared (equal or different; not the ones that could
        not be compared, were ignored, or differ between runs of the notebook itself)."""
        return sum(row.status in COMPARED for row in self.rows)

    @property
    def verdict(self) -> str:
        """``pass``, ``fail``, or ``nothing compared`` (both sides ran, nothing differs,
        but no value was compared either: nothing proves the conversion)."""
        if self.notebook_error or self.flow_error:
            return FAIL
        if any(row.status in FAILING for row in self.rows):
            return FAIL
        return PASS if self.compared else NOTHING_COMPARED

    @property
    def ok(self) -> bool:
        return self.verdict == PASS

    @property
    def failure(self) -> str | None:
        """Why the check failed: ``notebook`` (the notebook itself does not run, so there is
        nothing to prove), ``flow`` (the notebook runs, its flow does not), ``values`` (both
        run, some values differ), or None when it did not fail."""
        if self.notebook_error:
            return "notebook"
        if self.flow_error:
            return "flow"
        return "values" if self.verdict == FAIL else None

    def counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for row in self.rows:
            counts[row.status] = counts.get(row.status, 0) + 1
        return counts

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["ok"] = self.ok
        data["verdict"] = self.verdict
        data["failure"] = self.failure
        data["compared"] = self.compared
        data["counts"] = self.counts()
        data["values"] = data.pop("rows")
        return data


def parse_parameters(items: list[str] | None) -> dict[str, Any]:
    """``-p name=value`` options: the value is a Python literal when it parses as one
    (``5``, ``0.1``, ``True``, ``'x'``, ``[1, 2]``), else the text itself, as papermill does."""
    params: dict[str, Any] = {}
    for item in items or []:
        name, sep, text = item.partition("=")
        name = name.strip().replace("-", "_")
        if not sep or not name.isidentifier():
            raise Nb2flowError(f"bad parameter {item!r}: expected -p name=value")
        try:
            params[name] = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            params[name] = text
    return params


def _convert(path: Path, split: str = "auto") -> Conversion:
    """The notebook converted for the check: its flow returns what the user's script
    returns, and every task also returns the values the notebook leaves that it makes
    (``every_value``), so that the flow side reads them all from the task runs' outputs
    (see the flow driver in :mod:`nb2flow.check.runs`)."""
    from nb2flow.codegen import convert_notebook

    return convert_notebook(path, split=split, every_value=True)


def _names(conversion: Conversion) -> list[str]:
    """The names to compare: every value the notebook leaves, then any other variable the
    flow returns (an ``output:`` tag may name a loop variable)."""
    finals = conversion.final_names
    return finals + [n for n in conversion.output_names if n not in finals]


def check_notebook(
    path: str | Path,
    params: dict[str, Any] | None = None,
    *,
    timeout: float = 600.0,
    cwd: str | Path | None = None,
    kernel_name: str = "python3",
    ignore: list[str] | None = None,
    tol: Tolerance | None = None,
    split: str = "auto",
    repeat_notebook: str = "auto",
    parallel: bool = False,
) -> CheckReport:
    """Run the notebook and its conversion with `params`; compare their final values.

    Both run in `cwd` (default: the notebook's folder, where Jupyter runs it and where a
    generated script runs), so relative paths in the notebook (data files,
    ``sqlite:///mlflow.db``) mean the same on both sides: the notebook first, then the
    flow, or both at once when `parallel` (faster, for notebooks whose two runs do not
    write the same files). Whichever side fails first ends the check at once: the other is
    stopped, or not started. `timeout` bounds each notebook cell and the flow as a whole.
    Names in `ignore`, and in the notebook's metadata ``nb2flow.check.ignore``, are
    reported but not compared (values that differ by design, such as run ids or
    timestamps). `split` is the converter's (``auto``, ``tags``, ``headings``, ``cells``).

    `repeat_notebook` (:data:`REPEAT_CHOICES`): ``auto`` runs the notebook once more when
    values differ, and reports the ones that differ between its two runs as
    nondeterministic in the notebook (they do not fail the check); ``always`` does that
    for every value; ``never`` fails on any difference.
    """
    from nb2flow.check.runs import (
        FlowSide,
        NotebookSide,
        prepare_notebook,
        require_jupyter,
        run_sides,
    )
    from nb2flow.codegen import module_name
    from nb2flow.notebook.reader import read_notebook

    if repeat_notebook not in REPEAT_CHOICES:
        raise Nb2flowError(f"repeat_notebook must be one of {', '.join(REPEAT_CHOICES)}")
    require_jupyter(kernel_name)
    path = Path(path)
    params = dict(params or {})
    cwd = Path(cwd) if cwd is not None else path.resolve().parent
    notebook = read_notebook(path)
    report = CheckReport(
        notebook=str(path),
        parameters={k: repr(v) for k, v in params.items()},
        repeat=repeat_notebook,
    )

    start = time.perf_counter()
    conversion = _convert(path, split)
    script_text, names = conversion.script, _names(conversion)
    report.conversion_warnings = list(conversion.warnings)
    report.seconds["convert"] = time.perf_counter() - start
    ignored = set(ignore or []) | set(_metadata_ignore(notebook.data, path))
    param_source = "".join(f"{k} = {v!r}\n" for k, v in params.items())

    with tempfile.TemporaryDirectory(prefix="nb2flow-check-") as tmp:
        tmp_dir = Path(tmp)
        script = tmp_dir / f"{module_name(path)}.py"
        script.write_text(script_text, encoding="utf-8")
        report.script = f"nb2flow convert {path} (temporary copy)"

        def notebook_side(run: str, wanted: list[str]) -> NotebookSide:
            out = tmp_dir / run
            out.mkdir()
            prepared, numbers = prepare_notebook(notebook.node, param_source, wanted, out)
            label = str(path)
            return NotebookSide(prepared, numbers, out, cwd, timeout, kernel_name, label, run)

        (tmp_dir / "flow").mkdir()
        sides = [
            notebook_side("notebook", names),
            FlowSide(script, params, tmp_dir / "flow", cwd, timeout, conversion.plan.returned_by()),
        ]
        results = run_sides(sides, parallel=parallel)
        nb, flow = results["notebook"], results["flow"]
        report.seconds.update(notebook=nb.seconds, flow=flow.seconds)
        report.notebook_error, report.flow_error = nb.error, flow.error
        report.skipped = {n: r.skipped for n, r in results.items() if r.skipped}
        if nb.error or flow.error:
            return report
        report.flow_returns = list(flow.names or [])
        # the notebook's values, then anything else the flow returns
        extra = [n for n in flow.names or [] if n not in names]
        samples = _samples(nb.values)
        report.rows = _compare_all(names, nb.values, flow.values, ignored, tol, samples)
        report.rows += [
            ValueRow(n, NOT_COMPARED, "returned by the flow, not one of its outputs") for n in extra
        ]

        again = [
            row.name
            for row in report.rows
            if row.status == DIFFERENT or (repeat_notebook == "always" and row.status == EQUAL)
        ]
        if again and repeat_notebook != "never":
            second = run_sides([notebook_side("notebook (second run)", again)], parallel=False)
            rerun = second["notebook (second run)"]
            report.notebook_runs = 2
            report.seconds["notebook (second run)"] = rerun.seconds
            _mark_nondeterministic(report, nb, rerun, tol, samples)
    return report


def _mark_nondeterministic(
    report: CheckReport, first: Any, second: Any, tol: Tolerance | None, samples: list[Any]
) -> None:
    """Rows whose value the notebook's second run does not reproduce, or that a cell set
    while drawing from a global random state the notebook never seeds, become
    NONDETERMINISTIC; `report.notes` says how that was established."""
    from nb2flow.check import randomness

    why = "every compared value" if report.repeat == "always" else "the values that differed"
    if second.error:
        report.notes.append(
            f"the notebook ran a second time to check {why} against it, and failed: {second.error}"
        )
        return
    found, drawn = [], []
    unseeded = randomness.unseeded_draws(first.randomness, second.randomness, first.cells)
    for row in report.rows:
        if row.name not in second.values or row.name not in first.values:
            continue
        a, b = first.values[row.name], second.values[row.name]
        if a[0] != "value" or b[0] != "value":
            continue
        try:
            verdict = compare(a[1], b[1], tol, samples)
        except Exception:  # noqa: BLE001 - cannot tell: the first verdict stands
            continue
        flow_side = f"; against the flow: {row.detail}" if row.detail else ""
        if verdict.status == DIFFERENT:
            row.status = NONDETERMINISTIC
            row.detail = f"the notebook's two runs differ: {verdict.detail}{flow_side}"
            found.append(row.name)
        elif row.status == DIFFERENT and row.name in unseeded:
            number, state = unseeded[row.name]
            row.status = NONDETERMINISTIC
            row.detail = (
                f"cell {number} sets it drawing from {randomness.STATES[state]}, which the "
                f"notebook never seeds (its two runs leave it differently; they agreed on "
                f"this value by chance){flow_side}"
            )
            drawn.append(row.name)
    report.notes.append(
        f"the notebook ran twice (--repeat-notebook {report.repeat}) to check {why}: "
        + (
            f"{len(found)} nondeterministic in the notebook ({', '.join(found)})"
            if found
            else "its second run computed them the same"
        )
    )
    if drawn:
        report.notes.append(
            f"{len(drawn)} more set by cells drawing from an unseeded global random state "
            f"({', '.join(drawn)}): nondeterministic in the notebook"
        )


def _compare_all(
    names: list[str],
    nb_values: dict[str, tuple[str, Any, str]],
    flow_values: dict[str, tuple[str, Any, str]],
    ignored: set[str],
    tol: Tolerance | None,
    samples: list[Any] | None = None,
) -> list[ValueRow]:
    from nb2flow.runtime.core.unset import UNSET

    if samples is None:
        samples = _samples(nb_values)
    rows = []
    for name in names:
        if name in ignored:
            rows.append(ValueRow(name, IGNORED, "differs by design (ignored)"))
            continue
        if name not in nb_values:
            flow_kind, actual, _ = flow_values.get(name, ("", None, ""))
            if flow_kind == "value" and actual is UNSET:
                rows.append(ValueRow(name, EQUAL, "both leave it unbound"))
            else:
                rows.append(ValueRow(name, MISSING_IN_NOTEBOOK, "the notebook leaves it undefined"))
            continue
        if name not in flow_values:
            rows.append(ValueRow(name, MISSING_IN_FLOW, "no task run of the flow holds it"))
            continue
        (nb_kind, expected, nb_type), (flow_kind, actual, flow_type) = (
            nb_values[name],
            flow_values[name],
        )
        if nb_kind == "error" or flow_kind == "error":
            side, reason, kind = (
                ("notebook", expected, nb_type)
                if nb_kind == "error"
                else ("flow", actual, flow_type)
            )
            rows.append(ValueRow(name, NOT_COMPARED, f"{side}: {reason}", _short_type(kind)))
            continue
        try:
            verdict = compare(expected, actual, tol, samples)
        except Exception as exc:  # noqa: BLE001 - a comparison that breaks is reported, not fatal
            rows.append(ValueRow(name, NOT_COMPARED, f"comparing failed: {exc}"[:200]))
            continue
        rows.append(ValueRow(name, verdict.status, verdict.detail, type_name(expected)))
    return rows


def _samples(nb_values: dict[str, tuple[str, Any, str]]) -> list[Any]:
    """The notebook's values that can serve as inputs when models are compared."""
    return [v for kind, v, _ in nb_values.values() if kind == "value" and _is_sample(v)]


def _is_sample(value: Any) -> bool:
    from nb2flow.check.compare import is_sample

    try:
        return is_sample(value)
    except Exception:  # noqa: BLE001 - a value that breaks when sliced is no sample
        return False


def _short_type(qualified: str) -> str:
    """``xgboost.core.DMatrix`` -> ``xgboost.DMatrix``, as :func:`type_name` writes types."""
    module, _, name = qualified.rpartition(".")
    top = module.split(".")[0]
    return name if top in ("", "builtins") else f"{top}.{name}"


def _metadata_ignore(node: Any, path: Path) -> list[str]:
    """The names in the notebook metadata ``nb2flow.check.ignore`` (the reader has checked
    that ``nb2flow`` is an object)."""
    settings = node.get("metadata", {}).get("nb2flow", {}).get("check", {})
    if not isinstance(settings, dict):
        raise Nb2flowError(f"{path}: notebook metadata 'nb2flow.check' must be a JSON object")
    ignore = settings.get("ignore", [])
    if not isinstance(ignore, list) or not all(isinstance(name, str) for name in ignore):
        raise Nb2flowError(
            f"{path}: notebook metadata 'nb2flow.check.ignore' must be an array of names"
        )
    return ignore
