"""Fault injection for the run store and the cache (issue 13): a file system that fills
during a run, 16 processes writing the store at once, corrupt store and cache files.

Invariants asserted: no completed task run lost, no run mislabelled, nothing unpickled that
nb2flow did not write, every failure one line.
"""

from __future__ import annotations

import os
import pickle
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from nb2flow.store.db import Store

ROOT = Path(__file__).resolve().parent.parent


def env(**extra: str) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT), "NB2FLOW_PANEL": "off", **extra}


@pytest.fixture
def small_fs(tmp_path):
    """A 4 MiB tmpfs (root only; skipped with the reason where mounting is not allowed)."""
    mnt = tmp_path / "small"
    mnt.mkdir()
    if os.geteuid() != 0 or not shutil.which("mount"):
        pytest.skip("mounting a small tmpfs needs root")
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=4m,mode=0700", "tmpfs", str(mnt)],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        pytest.skip(f"mount -t tmpfs is not permitted here: {done.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


FILLING_FLOW = """
import os, sys
from pathlib import Path
from nb2flow import flow, run_cli, task

FILLER = Path(sys.argv[1])

@task
def step(i: int) -> int:
    return i

@task
def fill(x: int) -> int:
    # the disk fills while the run records its task runs
    with open(FILLER, "wb") as f:
        try:
            while True:
                f.write(b"x" * 65536)
        except OSError:
            pass
    return x

@task
def free(x: int) -> int:
    FILLER.unlink()  # the moment passes
    return x

@flow(name="disk-fills")
def main(n: int = 200):
    first = [step.submit(i) for i in range(n)]
    full = fill.submit(len(first), wait_for=first)
    later = [step.submit(i, wait_for=[full]) for i in range(n)]
    return free.submit(0, wait_for=later)

if __name__ == "__main__":
    sys.argv = sys.argv[:1] + sys.argv[2:]
    run_cli(main)
"""


def test_a_disk_that_fills_for_a_moment_loses_no_task_run_and_mislabels_no_run(small_fs, tmp_path):
    home = small_fs / "home"
    script = tmp_path / "flow.py"
    script.write_text(FILLING_FLOW)
    done = subprocess.run(
        [sys.executable, str(script), str(small_fs / "filler"), "--quiet"],
        env=env(NB2FLOW_HOME=str(home), NB2FLOW_STORE_HELPER="never"),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    with Store(home / "runs.db") as store:
        (run,) = store.list_runs(flow="disk-fills")
        view = store.load_run(run.id)
    assert (run.state, view.state) == ("Completed", "Completed")
    assert len(view.tasks) == 402
    assert {t.state for t in view.tasks.values()} == {"Completed"}


WRITER = """
import sys
from nb2flow import flow, task

@task
def t(i: int) -> int:
    return i

@flow(name="writer")
def main(n: int = 40):
    return [t.submit(i) for i in range(n)]

for _ in range(3):
    main(return_state=True)
"""


def test_sixteen_processes_writing_at_once_lose_nothing(tmp_path):
    script = tmp_path / "writer.py"
    script.write_text(WRITER)
    procs = [
        subprocess.Popen(
            [sys.executable, str(script)],
            env=env(NB2FLOW_STORE_HELPER="never"),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(16)
    ]
    outs = [p.communicate(timeout=600) for p in procs]
    assert [p.returncode for p in procs] == [0] * 16, [o[1][-500:] for o in outs]
    assert not any("nb2flow:" in err for _, err in outs), [o[1] for o in outs]
    with Store() as store:
        runs = store.list_runs(flow="writer", limit=None)
        assert len(runs) == 48
        assert {(r.state, r.done, r.tasks) for r in runs} == {("Completed", 40, 40)}


def test_random_bytes_over_a_store_are_one_error_line(tmp_path):
    store = Path(os.environ["NB2FLOW_HOME"]) / "runs.db"
    store.write_bytes(b"SQLite format 3\x00" + os.urandom(20000))
    for argv in (["runs"], ["show", "x"], ["report", "x", "-o", "-"]):
        done = subprocess.run(
            [sys.executable, "-m", "nb2flow", *argv],
            env=env(),
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
        (line,) = done.stderr.strip().splitlines()
        assert line.startswith("error:") and "runs.db" in line


CACHED_FLOW = """
import sys
from nb2flow import flow, run_cli, task

@task(cache=True)
def load(n: int) -> list:
    return list(range(n))

@flow(name="cached")
def main(n: int = 1000):
    return len(load.submit(n).result())

if __name__ == "__main__":
    run_cli(main)
"""


class Planted:
    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


@pytest.mark.parametrize("how", ["truncate", "random", "planted-pickle", "swap-entries"])
def test_corrupt_cache_files_are_misses_and_nothing_foreign_is_unpickled(tmp_path, how):
    script = tmp_path / "flow.py"
    script.write_text(CACHED_FLOW)

    def run(n: int = 1000) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, str(script), "--n", str(n), "--json"],
            env=env(),
            capture_output=True,
            text=True,
            timeout=120,
        )

    assert run().returncode == 0 and run(7).returncode == 0
    results = Path(os.environ["NB2FLOW_HOME"]) / "results"
    values = sorted(results.glob("*/*/value.pkl"))
    assert len(values) == 2
    marker = tmp_path / f"pwned-{uuid.uuid4().hex}"
    if how == "truncate":
        values[0].write_bytes(values[0].read_bytes()[:10])
    elif how == "random":
        values[0].write_bytes(os.urandom(values[0].stat().st_size))
    elif how == "planted-pickle":
        values[0].write_bytes(pickle.dumps(Planted(str(marker))))
    else:  # two valid entries, each in the other's place
        a, b = values[0].parent, values[1].parent
        os.rename(a, tmp_path / "a")
        os.rename(b, a)
        os.rename(tmp_path / "a", b)
    first, second = run(), run(7)
    assert (first.returncode, second.returncode) == (0, 0), first.stderr + second.stderr
    assert (first.stdout.strip(), second.stdout.strip()) == ("1000", "7")
    assert not marker.exists()
    warned = [
        line
        for line in (first.stderr + second.stderr).splitlines()
        if "cache entry" in line and "running the task" in line
    ]
    assert warned and all("\n" not in w and "Traceback" not in w for w in warned)
    assert run().stdout.strip() == "1000" and run(7).stdout.strip() == "7"  # rewritten


def test_nb2flow_unpickles_only_cache_entries_and_its_own_pipes_and_temp_files():
    """Where nb2flow calls an unpickler: cache entries (checked first), what its own workers
    send back over pipes, and what ``check``'s own subprocess writes to its private temp
    folder. A new reader elsewhere fails this until it is looked at."""
    readers = []
    for path in (ROOT / "nb2flow").rglob("*.py"):
        text = path.read_text()
        for needle in ("pickle.load(", "pickle.loads(", "cloudpickle.load"):
            if needle in text:
                readers.append((path.relative_to(ROOT).as_posix(), needle))
    allowed = {"nb2flow/runtime/cache/storage.py"}
    # the process and Dask runners unpickle what their own workers send back over a pipe
    allowed |= {p for p, _ in readers if "/runners/" in p or "/engine/" in p}
    allowed.add("nb2flow/check/runs.py")
    assert {p for p, _ in readers} <= allowed, readers
