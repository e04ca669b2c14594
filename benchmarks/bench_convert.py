"""Conversion speed: nb2flow convert beside ``jupyter nbconvert --to script``.

Measures, on the example notebook and on a synthetic 2,000-cell notebook:

* in process: ``nb2flow.codegen.convert_notebook`` vs nbconvert's ``ScriptExporter``;
* command line: ``nb2flow convert`` vs ``jupyter nbconvert --to script`` (fresh processes);
* start-up: ``nb2flow --help`` vs ``python -c pass``.

Targets (docs/converter.md): convert faster than nbconvert; ``--help`` under 150 ms.
Run: ``.venv/bin/python benchmarks/bench_convert.py [--repeat N]``.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "notebooks" / "duration-prediction.ipynb"
BIN = Path(sys.executable).parent


def synthetic_notebook(path: Path, cells: int = 2000) -> Path:
    """A tagged-by-headings notebook: a chain of data steps with in-place changes."""
    import nbformat
    from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

    nb = new_notebook()
    nb.cells.append(new_code_cell("import math\nimport statistics"))
    nb.cells.append(new_code_cell("n = 10\nscale = 1.5"))
    nb.cells[-1].metadata["tags"] = ["parameters"]
    for i in range(cells - 2):
        if i % 20 == 0:
            nb.cells.append(new_markdown_cell(f"## Step {i // 20}\nWhat this section does."))
        prev = f"v{i - 1}" if i else "[n]"
        body = {
            0: f"v{i} = [x * scale for x in {prev}]",
            1: f"v{i} = list({prev})\nv{i}.append(len({prev}))",
            2: f"v{i} = sorted({prev})[:50]\ntotal_{i} = sum(v{i})",
            3: f"def f{i}(x):\n    return math.sqrt(abs(x)) + {i}",
            4: f"v{i} = [f{i - 1}(x) for x in {prev}] if {i} > 4 else {prev}",
        }[i % 5]
        nb.cells.append(new_code_cell(body))
    for i, cell in enumerate(nb.cells):
        cell["id"] = f"c{i}"
    nbformat.write(nb, str(path))
    return path


def best_of(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def run(cmd: list[str], cwd: Path) -> None:
    subprocess.run(cmd, cwd=cwd, check=True, capture_output=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    from nbconvert.exporters import ScriptExporter

    from nb2flow.codegen import convert_notebook

    work = Path(tempfile.mkdtemp(prefix="bench_convert_"))
    try:
        cases = []
        if EXAMPLE.exists():
            cases.append(("example", EXAMPLE))
        else:
            print(f"(no {EXAMPLE.relative_to(ROOT)}: example skipped)")
        cases.append(("synthetic 2,000 cells", synthetic_notebook(work / "synthetic.ipynb")))
        jupyter = BIN / "jupyter"
        nb2flow = BIN / "nb2flow"
        rows = []
        for name, path in cases:
            exporter = ScriptExporter()
            ours = best_of(lambda p=path: convert_notebook(p), args.repeat)
            theirs = best_of(lambda p=path, e=exporter: e.from_filename(str(p)), args.repeat)
            ours_cli = best_of(
                lambda p=path: run([str(nb2flow), "convert", str(p), "-o", str(work), "-q"], work),
                args.repeat,
            )
            theirs_cli = best_of(
                lambda p=path: run(
                    [
                        str(jupyter),
                        "nbconvert",
                        "--to",
                        "script",
                        str(p),
                        "--output-dir",
                        str(work),
                    ],
                    work,
                ),
                args.repeat,
            )
            tasks = len(convert_notebook(path).plan.tasks)
            rows.append((name, tasks, ours, theirs, ours_cli, theirs_cli))

        help_time = best_of(lambda: run([str(nb2flow), "--help"], work), max(args.repeat, 5))
        pass_time = best_of(lambda: run([sys.executable, "-c", "pass"], work), max(args.repeat, 5))
    finally:
        shutil.rmtree(work, ignore_errors=True)

    print(f"best of {args.repeat} runs each (seconds); ratio = nbconvert / nb2flow (>1: faster)\n")
    print(
        "| notebook | tasks | nb2flow in-process | nbconvert in-process | ratio "
        "| nb2flow CLI | nbconvert CLI | ratio |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    ok = True
    for name, tasks, ours, theirs, ours_cli, theirs_cli in rows:
        print(
            f"| {name} | {tasks} | {ours:.3f} | {theirs:.3f} | {theirs / ours:.2f}x "
            f"| {ours_cli:.3f} | {theirs_cli:.3f} | {theirs_cli / ours_cli:.2f}x |"
        )
        ok &= ours_cli < theirs_cli
    print(
        f"\n`nb2flow --help`: {help_time * 1000:.0f} ms; `python -c pass`: {pass_time * 1000:.0f} ms "
        f"(difference {1000 * (help_time - pass_time):.0f} ms; target: --help under 150 ms)"
    )
    ok &= help_time < 0.150
    print("targets met" if ok else "TARGET MISSED")
    return 0


if __name__ == "__main__":
    sys.exit(main())
