"""Tasks that show things as a notebook cell does (print, stderr, a library's log records, a
figure, a displayed DataFrame), importable by pool processes and Dask workers."""

from __future__ import annotations

import sys

from nb2flow import artifacts, flow, task
from tests import capture_lib


@task
def chatty(i: int) -> int:
    print(f"print {i}")
    sys.stderr.write(f"stderr {i}\n")
    return capture_lib.train(i)


@task
def draws(i: int) -> int:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(2, 2))
    ax.plot([0, 1], [0, i])
    fig.set_label(f"line {i}")
    return i


@task
def shows_frame(n: int):
    import pandas as pd

    df = pd.DataFrame({"trip": range(n), "minutes": [1.5 * k for k in range(n)]})
    artifacts.display(df.head(3))
    return df


@task
def quiet(i: int) -> int:
    return i


@flow(name="capture-paths")
def capture_flow() -> dict:
    return {
        "chatty": chatty.submit(1),
        "draws": draws.submit(2),
        "frame": shows_frame.submit(4),
        "quiet": quiet.submit(3),
    }


def check_capture_run(run) -> None:  # noqa: ANN001
    """What every runner must record of :func:`capture_flow`."""
    assert run.state == "Completed", run.error
    v = run.view
    by_name = {t.name: t for t in v.tasks.values()}
    logs = {}
    for lg in v.logs:
        if lg.task_run_id is not None:
            logs.setdefault(v.tasks[lg.task_run_id].name, []).append(
                (lg.logger, lg.levelname, lg.message)
            )
    assert logs["chatty"] == [
        ("stdout", "INFO", "print 1"),
        ("stderr", "WARNING", "stderr 1"),
        ("nb2flow_tests.lib", "INFO", "lib record 1"),
    ]
    assert "quiet" not in logs and "draws" not in logs  # nothing printed, nothing recorded
    arts = {(v.tasks[a.task_run_id].name, a.kind): a for a in v.artifacts}
    figure = arts[("draws", "image")]
    assert figure.name == "line 2"
    assert figure.get("image/png").startswith(b"\x89PNG\r\n\x1a\n")
    frame = arts[("shows_frame", "value")]
    assert "<table" in frame.get("text/html") and "minutes" in frame.get("text/html")
    assert "trip" in frame.text
    assert len(v.artifacts) == 2
    assert by_name["shows_frame"].result["type"] == "pandas.DataFrame"
    assert by_name["shows_frame"].result["shape"] == [4, 2]
    assert by_name["chatty"].result == {"type": "int", "repr": "1"}
    assert v.result["items"]["quiet"] == {"type": "int", "repr": "3"}
