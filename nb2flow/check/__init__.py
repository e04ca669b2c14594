"""``nb2flow check``: prove a conversion by running both sides and comparing their values.

:func:`check_notebook` converts the notebook, runs it top to bottom in a Jupyter kernel
(``skip`` cells left out), runs the generated flow with the same parameters, and compares
every final value the flow returns with the notebook's (:mod:`nb2flow.check.compare`).
"""

from __future__ import annotations

import ast
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from nb2flow.check.compare import DIFFERENT, EQUAL, NOT_COMPARED, Tolerance, compare, type_name
from nb2flow.errors import Nb2flowError

__all__ = [
    "DIFFERENT",
    "EQUAL",
    "IGNORED",
    "MISSING_IN_FLOW",
    "MISSING_IN_NOTEBOOK",
    "NOT_COMPARED",
    "CheckReport",
    "ValueRow",
    "check_notebook",
    "parse_parameters",
]

#: row statuses, besides compare's EQUAL / DIFFERENT / NOT_COMPARED
MISSING_IN_FLOW = "missing in flow"
MISSING_IN_NOTEBOOK = "missing in notebook"
IGNORED = "ignored"
FAILING = (DIFFERENT, MISSING_IN_FLOW, MISSING_IN_NOTEBOOK)


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
    conversion_warnings: list[str] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        if self.notebook_error or self.flow_error:
            return False
        return not any(row.status in FAILING for row in self.rows)

    @property
    def failure(self) -> str | None:
        """Why the check failed: ``notebook`` (the notebook itself does not run, so there is
        nothing to prove), ``flow`` (the notebook runs, its flow does not), ``values`` (both
        run, some values differ), or None when it passed."""
        if self.notebook_error:
            return "notebook"
        if self.flow_error:
            return "flow"
        return None if self.ok else "values"

    def counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for row in self.rows:
            counts[row.status] = counts.get(row.status, 0) + 1
        return counts

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["ok"] = self.ok
        data["failure"] = self.failure
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


def _convert(path: Path, split: str = "auto") -> tuple[str, list[str], list[str]]:
    """The generated script, the names the flow returns, and the converter's warnings."""
    from nb2flow.codegen import convert_notebook

    conversion = convert_notebook(path, split=split)
    names = list(getattr(conversion, "output_names", None) or [])
    return conversion.script, names, list(getattr(conversion, "warnings", None) or [])


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
) -> CheckReport:
    """Run the notebook and its conversion with `params`; compare their final values.

    Both run in `cwd` (default: the notebook's folder, where Jupyter runs it and where a
    generated script runs), so relative paths in the notebook (data files,
    ``sqlite:///mlflow.db``) mean the same on both sides. `timeout` bounds each
    notebook cell and the flow as a whole. Names in `ignore`, and in the notebook's metadata
    ``nb2flow.check.ignore``, are reported but not compared (values that differ by design,
    such as run ids or timestamps). `split` is the converter's (``auto``, ``tags``,
    ``headings``, ``cells``).
    """
    from nb2flow.check.runs import prepare_notebook, require_jupyter, run_flow, run_notebook
    from nb2flow.codegen import module_name
    from nb2flow.notebook.reader import read_notebook

    require_jupyter(kernel_name)
    path = Path(path)
    params = dict(params or {})
    cwd = Path(cwd) if cwd is not None else path.resolve().parent
    notebook = read_notebook(path)
    report = CheckReport(notebook=str(path), parameters={k: repr(v) for k, v in params.items()})

    start = time.perf_counter()
    script_text, names, report.conversion_warnings = _convert(path, split)
    report.seconds["convert"] = time.perf_counter() - start
    ignored = set(ignore or []) | set(_metadata_ignore(notebook.data, path))

    with tempfile.TemporaryDirectory(prefix="nb2flow-check-") as tmp:
        tmp_dir = Path(tmp)
        script = tmp_dir / f"{module_name(path)}.py"
        script.write_text(script_text, encoding="utf-8")
        report.script = f"nb2flow convert {path} (temporary copy)"
        (tmp_dir / "flow").mkdir()
        (tmp_dir / "nb").mkdir()

        # the flow first: the names it returns are the values to compare
        flow = run_flow(script, params, tmp_dir / "flow", cwd=cwd, timeout=timeout)
        report.seconds["flow"] = flow.seconds
        if flow.error:
            report.flow_error = flow.error
        # what the converter says the flow returns, and anything else it does return
        wanted = names + [n for n in flow.names or [] if n not in names]

        param_source = "".join(f"{k} = {v!r}\n" for k, v in params.items())
        prepared, numbers = prepare_notebook(notebook.node, param_source, wanted, tmp_dir / "nb")
        nb = run_notebook(
            prepared,
            numbers,
            tmp_dir / "nb",
            cwd=cwd,
            timeout=timeout,
            kernel_name=kernel_name,
            label=str(path),
        )
        report.seconds["notebook"] = nb.seconds
        if nb.error:
            report.notebook_error = nb.error
        if not flow.error and not nb.error:
            report.rows = _compare_all(wanted, nb.values, flow.values, ignored, tol)
    return report


def _compare_all(
    names: list[str],
    nb_values: dict[str, tuple[str, Any, str]],
    flow_values: dict[str, tuple[str, Any, str]],
    ignored: set[str],
    tol: Tolerance | None,
) -> list[ValueRow]:
    from nb2flow.check.compare import is_sample
    from nb2flow.runtime.core.unset import UNSET

    samples = [v for kind, v, _ in nb_values.values() if kind == "value" and is_sample(v)]
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
            rows.append(ValueRow(name, MISSING_IN_FLOW, "the flow does not return it"))
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
