"""Corpus report: over the runnable notebooks of ``../shared/corpus`` (untagged, written by
other people; see its README), does each convert, does its script run, and does ``nb2flow
check`` pass, per task runner? Prints a markdown summary with the reason for every failure
(the table of docs/converter.md) and keeps every result as JSON lines.

Slow (each check runs the notebook in a kernel and the flow): run it by hand, not in the
suite::

    PYTHONPATH=. .venv/bin/python benchmarks/corpus_report.py                  # all runners
    PYTHONPATH=. .venv/bin/python benchmarks/corpus_report.py --runners threads --only mpl-

Each notebook is copied to a fresh folder per runner first (some write files beside
themselves). The script runs once, on the default runner (``python script.py``); ``check``
runs on each runner (``NB2FLOW_TASK_RUNNER``), with MPLBACKEND=Agg as the corpus was run
(the check's kernel uses Jupyter's inline backend whatever MPLBACKEND says). The notebooks'
libraries are the ``corpus`` extra (``pip install -e '.[corpus]'``, or ``make corpus-report``).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CORPUS = ROOT.parent / "shared" / "corpus"
#: the notebooks the corpus README says run offline here
RUNNABLE_PREFIXES = ("sklearn-", "sklearn2-", "mpl-", "wtp-")
RUNNERS = {"threads": "threads", "processes": "processes:2", "dask": "dask:2"}


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1][:300] if lines else ""


def _env() -> dict[str, str]:
    env = dict(os.environ, MPLBACKEND="Agg", NB2FLOW_CACHE="off")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return env


def convert(notebook: Path, folder: Path) -> tuple[Path | None, str]:
    """The script converted from ``notebook`` (copied into ``folder``), or None and why."""
    from nb2flow.codegen import convert_notebook, write_script
    from nb2flow.errors import Nb2flowError

    copy = folder / notebook.name
    shutil.copy(notebook, copy)
    try:
        conversion = convert_notebook(copy)
        compile(conversion.script, "script.py", "exec")
    except (Nb2flowError, SyntaxError) as exc:
        return None, str(exc)[:300]
    return write_script(conversion, folder / "converted_scripts"), ""


def run_script(script: Path, timeout: float) -> str:
    """'' when ``python script.py`` ran, else why not."""
    try:
        proc = subprocess.run(
            [sys.executable, str(script), "-q", "--no-store"],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=_env(),
        )
    except subprocess.TimeoutExpired:
        return f"timed out after {timeout:g} s"
    return "" if proc.returncode == 0 else _last_line(proc.stderr) or f"exit {proc.returncode}"


def check(notebook: Path, runner: str, timeout: float) -> dict:
    """``nb2flow check --json`` of ``notebook`` on ``runner``: verdict, values, reasons."""
    env = _env()
    env["NB2FLOW_TASK_RUNNER"] = RUNNERS[runner]
    args = [sys.executable, "-m", "nb2flow", "check", "--json", "--timeout", str(timeout)]
    try:
        proc = subprocess.run(
            [*args, str(notebook)],
            capture_output=True,
            text=True,
            timeout=timeout * 3,
            env=env,
            cwd=notebook.parent,
        )
    except subprocess.TimeoutExpired:
        return {"verdict": "fail", "reason": f"check timed out after {timeout * 3:g} s"}
    try:
        report = json.loads(proc.stdout)
    except json.JSONDecodeError:
        return {"verdict": "fail", "reason": _last_line(proc.stderr) or f"exit {proc.returncode}"}
    reason = report.get("notebook_error") or report.get("flow_error") or ""
    if report.get("failure") == "values":
        bad = [
            f"{v['name']}: {v['status']} ({v['detail'][:80]})"
            for v in report["values"]
            if v["status"] in ("different", "missing in flow", "missing in notebook")
        ]
        reason = "; ".join(bad[:4]) + (f"; +{len(bad) - 4} more" if len(bad) > 4 else "")
    counts = report.get("counts", {})
    return {
        "verdict": report.get("verdict"),
        "failure": report.get("failure"),
        "compared": report.get("compared"),
        "nondeterministic": counts.get("nondeterministic in the notebook", 0),
        "reason": reason[:400],
        "seconds": report.get("seconds"),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runners", default=",".join(RUNNERS), help="comma-separated")
    parser.add_argument("--only", default="", help="notebooks whose name starts with this")
    parser.add_argument("--timeout", type=float, default=300, help="seconds per run")
    parser.add_argument(
        "--results", default=os.path.join(tempfile.gettempdir(), "nb2flow-corpus.jsonl")
    )
    args = parser.parse_args(argv)
    runners = [r.strip() for r in args.runners.split(",") if r.strip()]
    notebooks = [
        p
        for p in sorted(CORPUS.glob("*.ipynb"))
        if p.name.startswith(RUNNABLE_PREFIXES) and p.name.startswith(args.only)
    ]
    results = []
    with (
        tempfile.TemporaryDirectory(prefix="nb2flow-corpus-") as tmp,
        open(args.results, "a", encoding="utf-8") as log,
    ):
        for notebook in notebooks:
            started = time.monotonic()
            row: dict = {"notebook": notebook.stem}
            folder = Path(tmp) / notebook.stem / "convert"
            folder.mkdir(parents=True)
            script, row["convert"] = convert(notebook, folder)
            row["script"] = run_script(script, args.timeout) if script else "not converted"
            for runner in runners:
                copy = Path(tmp) / notebook.stem / runner
                copy.mkdir()
                shutil.copy(notebook, copy / notebook.name)
                row[runner] = check(copy / notebook.name, runner, args.timeout)
            row["wall"] = round(time.monotonic() - started, 1)
            log.write(json.dumps(row) + "\n")
            log.flush()
            results.append(row)
            verdicts = " ".join(f"{r}={row[r]['verdict']}" for r in runners)
            print(
                f"{notebook.stem}: convert={'ok' if script else 'FAIL'} "
                f"script={'ok' if not row['script'] else 'FAIL'} {verdicts}",
                file=sys.stderr,
            )
    print(summary(results, runners))
    return 0


def summary(results: list[dict], runners: list[str]) -> str:
    """The markdown table and the failures, with their reasons."""
    n = len(results)
    converted = sum(not r["convert"] for r in results)
    ran = sum(not r["script"] for r in results)
    lines = [
        f"{n} runnable notebooks: {converted} convert, {ran} scripts run (default runner).",
        "",
        "| runner | check passes | fails: notebook / flow / values | nothing compared "
        "| values compared | nondeterministic in the notebook |",
        "|---|---|---|---|---|---|",
    ]
    for runner in runners:
        checks = [r[runner] for r in results]
        passed = sum(c["verdict"] == "pass" for c in checks)
        kinds = [sum(c.get("failure") == k for c in checks) for k in ("notebook", "flow", "values")]
        other = sum(c["verdict"] == "fail" and not c.get("failure") for c in checks)
        nothing = sum(c["verdict"] == "nothing compared" for c in checks)
        compared = sum(c.get("compared") or 0 for c in checks)
        nondet = sum(c.get("nondeterministic") or 0 for c in checks)
        fails = " / ".join(map(str, kinds)) + (f" (+{other} check errors)" if other else "")
        lines.append(f"| {runner} | {passed}/{n} | {fails} | {nothing} | {compared} | {nondet} |")
    lines += ["", "Failures:", ""]
    for r in results:
        if r["convert"]:
            lines.append(f"- `{r['notebook']}`: convert: {r['convert']}")
        elif r["script"]:
            lines.append(f"- `{r['notebook']}`: script: {r['script']}")
        for runner in runners:
            c = r[runner]
            if c["verdict"] != "pass":
                lines.append(f"- `{r['notebook']}` ({runner}): {c['verdict']}: {c['reason']}")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
