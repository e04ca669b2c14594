"""Task results live only as long as something needs them (issue 15, part 1).

A result is released as soon as every task run reading it has finished and nothing else
holds it; it stays while the user's future, the flow's return value or a later reader
still needs it. "Released" is checked with a weakref to the value in the flow process:
the engine holds no reference of its own, so the value dies by reference counting.
"""

from __future__ import annotations

import gc
import weakref

import pytest

from nb2flow import flow, task


class Blob:
    """A stand-in for a big frame: weakref-able, picklable by reference."""

    def __init__(self, tag: str) -> None:
        self.tag = tag


@task
def make(tag):
    return Blob(tag)


@task
def read(blob):
    return blob.tag


@task(nout=2)
def make_two(tag):
    return Blob(tag + "0"), Blob(tag + "1")


# task runs of the threads runner see each other: a reader leaves a weakref here
SEEN: dict[str, weakref.ref] = {}


@task
def remember(blob):
    SEEN[blob.tag] = weakref.ref(blob)
    return blob.tag


@task
def released(_, tag):
    return SEEN[tag]() is None


RUNNERS = ["sequential", "threads", pytest.param("processes", marks=pytest.mark.slow)]


@pytest.fixture(autouse=True)
def _refcount_only():
    # what is released must be released by reference counting, not by a collector pass
    gc.disable()
    yield
    gc.enable()


@pytest.mark.parametrize("runner", RUNNERS)
def test_a_result_read_by_a_finished_task_is_released(runner):
    @flow(task_runner=runner, persist=False)
    def body():
        a = make.submit("x")
        r = read.submit(a)
        ref = weakref.ref(a.result())  # the value as the flow process has it
        del a  # the user lets go of the future
        assert r.result() == "x"
        return ref() is None

    assert body() is True


@pytest.mark.parametrize("runner", RUNNERS)
def test_a_result_the_user_holds_is_kept_and_read_again(runner):
    @flow(task_runner=runner, persist=False)
    def body():
        a = make.submit("y")
        first = read.submit(a).result()
        ref = weakref.ref(a.result())
        second = read.submit(a)  # a later reader, after the first one finished
        return {"first": first, "second": second, "alive": ref() is not None, "a": a}

    out = body()
    assert out["first"] == out["second"] == "y"
    assert out["alive"] is True
    assert isinstance(out["a"], Blob) and out["a"].tag == "y"  # the declared return


@pytest.mark.parametrize("runner", RUNNERS)
def test_the_declared_return_keeps_a_result_whose_readers_finished(runner):
    @flow(task_runner=runner, persist=False)
    def body():
        a = make.submit("z")
        r = read.submit(a)
        return {"a": a, "r": r}

    out = body()
    assert out["r"] == "z" and out["a"].tag == "z"


@pytest.mark.parametrize("runner", RUNNERS)
def test_an_item_future_keeps_its_run_until_dropped(runner):
    @flow(task_runner=runner, persist=False)
    def body():
        a0, a1 = make_two.submit("n")
        r = read.submit(a0)
        ref = weakref.ref(a1.result())
        kept = read.submit(a1).result()
        alive = ref() is not None
        del a0, a1
        r.wait()
        return kept, alive, ref() is None

    assert body() == ("n1", True, True)


@pytest.mark.parametrize("runner", ["sequential", "threads"])
def test_released_while_the_flow_still_runs(runner):
    """The body dropped every future: the first value dies when its reader finished, before
    the run is over (checked by a later task of the same run)."""
    SEEN.clear()

    @flow(task_runner=runner, persist=False)
    def chain():
        a = make.submit("w")
        seen = remember.submit(a)
        del a
        return released.submit(seen, "w")

    assert chain() is True


@pytest.mark.parametrize("runner", ["sequential", "threads"])
def test_a_pending_reader_keeps_the_value_it_needs(runner):
    """A second reader, not started when the first one ends, still reads the value; once
    it ends too, the value goes."""
    SEEN.clear()

    @flow(task_runner=runner, persist=False)
    def chain():
        a = make.submit("v")
        seen = remember.submit(a)
        later = read.submit(a, wait_for=[seen])
        del a
        gone = released.submit(seen, "v", wait_for=[later])
        return {"later": later, "gone_after_last_reader": gone}

    assert chain() == {"later": "v", "gone_after_last_reader": True}


def test_keep_outputs_keeps_every_value_by_task_key():
    @flow(task_runner="threads", persist=False, keep_outputs=True)
    def chain():
        a = make.submit("k")
        return read.submit(a)

    fr = chain(return_state=True)
    assert fr.result() == "k"
    assert isinstance(fr.output("make"), Blob) and fr.output("make").tag == "k"
    assert fr.outputs == {"make": fr.output("make"), "read": "k"}


def test_without_keep_outputs_a_flow_run_keeps_no_values(monkeypatch):
    monkeypatch.delenv("NB2FLOW_KEEP_OUTPUTS", raising=False)

    @flow(task_runner="threads", persist=False)
    def chain():
        a = make.submit("s")
        return read.submit(a)

    fr = chain(return_state=True)
    with pytest.raises(ValueError, match="keep_outputs"):
        fr.output("make")
    assert [t.state for t in fr.task_runs] == ["Completed", "Completed"]
    assert all(c.future is None for c in fr.calls)  # nothing alive for the FlowRun's sake


def test_keep_outputs_from_the_environment(monkeypatch):
    monkeypatch.setenv("NB2FLOW_KEEP_OUTPUTS", "1")

    @flow(task_runner="sequential", persist=False)
    def chain():
        return read.submit(make.submit("e"))

    assert chain(return_state=True).output("read") == "e"


# ------------------------------ processes: a value crosses the flow process once, uncopied

MB = 1 << 20
SIZE = 16 * MB  # bytes of the arrays below: far above the out-of-band threshold


@task
def array(n_bytes):
    import numpy as np

    return np.ones(n_bytes // 8)


@task
def bump(a):
    a += 1.0  # in place: what arrived is writable memory of its own, not a read-only view
    return a


@task
def total(a):
    return float(a.sum())


@pytest.mark.slow
def test_processes_the_flow_process_holds_a_big_result_once_and_sends_it_without_a_copy():
    """The flow process reads a result's buffers straight into the memory of the value it
    unpickles (never the pickled bytes and the value together) and sends it on to the next
    worker from that memory: a 16 MB array costs it 16 MB, not 32 or 48 (tracemalloc
    counts every allocation of this process, numpy's included)."""
    import tracemalloc

    @flow(task_runner="processes:1", persist=False)
    def body(size):
        a = bump.submit(array.submit(size))
        value = a.result()
        return value.flags.writeable, float(value[0]), total.submit(a)

    body(8)  # what a first run imports is not what this measures
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        writable, first, summed = body(SIZE)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert (writable, first, summed) == (True, 2.0, 2.0 * SIZE / 8)
    assert peak - before < 1.25 * SIZE, f"{(peak - before) / MB:.1f} MB for a {SIZE // MB} MB value"


# a pool worker's module: its tasks leave weakrefs here (one worker runs them all)
IN_WORKER: dict[str, weakref.ref] = {}


def in_worker() -> dict[str, weakref.ref]:
    """The worker's own ``IN_WORKER`` (a task's function travels by value, with a copy of
    the globals it names; this plain function travels by reference)."""
    return IN_WORKER


@task
def made_in_worker(tag, big):
    gc.disable()  # this worker lives for this flow run: what goes must go by refcount
    value = array.fn(SIZE) if big else Blob(tag)
    in_worker()[tag] = weakref.ref(value)
    return value


@task
def read_in_worker(value, tag):
    in_worker()[tag] = weakref.ref(value)
    return tag


@task
def gone_in_worker(_, tags):
    return {tag: in_worker()[tag]() is None for tag in tags}


@pytest.mark.slow
@pytest.mark.parametrize("big", [False, True], ids=["object", "array"])
def test_processes_a_worker_keeps_neither_the_result_it_sent_nor_the_value_it_read(big):
    @flow(task_runner="processes:1", persist=False)
    def chain():
        made = made_in_worker.submit("sent", big)
        read = read_in_worker.submit(made, "read")
        del made
        return gone_in_worker.submit(read, ["sent", "read"])

    assert chain() == {"sent": True, "read": True}


# A converted notebook: each frame is read by the next cell only; the last cell shows `gone`.
PROBE = """
import threading
import weakref

FREED = {}


class Frame:
    def __init__(self, tag):
        self.tag = tag
        FREED[tag] = threading.Event()
        weakref.finalize(self, FREED[tag].set)


def gone(tag):
    # freed by reference counting once nothing holds it: awaited, not polled
    return FREED[tag].wait(timeout=10)
"""
CHAIN = [
    "import probe",
    "a = probe.Frame('a')",
    "b = probe.Frame(a.tag + 'b')",
    "c = probe.Frame(b.tag + 'c')",
    "gone = (c.tag, probe.gone('a'), probe.gone('ab'))",
    "gone",
]


@pytest.mark.parametrize("runner", ["sequential", "threads"])
def test_a_converted_flow_releases_what_it_does_not_return(tmp_path, monkeypatch, runner):
    """The flow returns `gone` only (the last cell shows it), so `a` and `b` go once their
    readers ended, while the flow still runs: on threads because the flow's return no longer
    holds them (it held every name), on the sequential runner, which runs each task as the
    body submits it, because the body lets go of their futures (`del a`, `del b`)."""
    import runpy

    from notebooks.nbbuild import code, write

    from nb2flow.codegen import convert_notebook

    (tmp_path / "probe.py").write_text(PROBE)
    monkeypatch.syspath_prepend(str(tmp_path))
    path = write(tmp_path / "chain.ipynb", [code(c) for c in CHAIN])
    conversion = convert_notebook(path, split="cells")
    assert conversion.output_names == ["gone"]
    assert "    del a\n" in conversion.script and "    del b\n" in conversion.script
    script = tmp_path / "chain_flow.py"
    script.write_text(conversion.script)
    main = runpy.run_path(str(script), run_name="chain_flow")["main"]
    result = main.with_options(task_runner=runner, persist=False)()
    assert result == {"gone": ("abc", True, True)}


@task(timeout_seconds=120, hard_timeout=True)
def array_in_a_child(n_bytes):
    return array.fn(n_bytes)


def test_a_hard_timeout_attempt_sends_a_big_value_back_once():
    """The child process of a ``hard_timeout`` attempt sends its value over the same kind
    of pipe: the flow process receives a 16 MB array into its final memory (writable)."""
    import tracemalloc

    @flow(task_runner="sequential", persist=False)
    def body(size):
        value = array_in_a_child.submit(size).result()
        return value.flags.writeable, float(value.sum())

    body(8)  # what a first run imports is not what this measures
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        writable, summed = body(SIZE)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert (writable, summed) == (True, SIZE / 8)
    assert peak - before < 1.25 * SIZE, f"{(peak - before) / MB:.1f} MB for a {SIZE // MB} MB value"
