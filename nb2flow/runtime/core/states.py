"""State names of flow runs and task runs (Prefect's vocabulary)."""

from __future__ import annotations

PENDING = "Pending"
RUNNING = "Running"
COMPLETED = "Completed"
CACHED = "Cached"
FAILED = "Failed"
RETRYING = "Retrying"
TIMED_OUT = "TimedOut"
CANCELLED = "Cancelled"
CRASHED = "Crashed"
NOT_RUN = "NotRun"

ALL_STATES = (
    PENDING,
    RUNNING,
    COMPLETED,
    CACHED,
    FAILED,
    RETRYING,
    TIMED_OUT,
    CANCELLED,
    CRASHED,
    NOT_RUN,
)
#: States after which nothing more happens to a run.
FINAL_STATES = frozenset({COMPLETED, CACHED, FAILED, TIMED_OUT, CANCELLED, CRASHED, NOT_RUN})
#: Final states that count as success (downstream tasks may run).
OK_STATES = frozenset({COMPLETED, CACHED})
