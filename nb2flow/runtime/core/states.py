"""State names of flow runs and task runs (Prefect's vocabulary), the sets they fall in, and
the one colour of each state that the terminal, ``nb2flow show``, the panel and the report
all use."""

from __future__ import annotations

from typing import NamedTuple

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
#: States a run can still leave.
OPEN_STATES = (PENDING, RUNNING, RETRYING)
#: Final states that count as success (downstream tasks may run).
OK_STATES = frozenset({COMPLETED, CACHED})
#: Final states of a run that ended with an error (counted and shown as failures). Cancelled
#: (a user's Ctrl-C, a flow timeout) and NotRun (an upstream failed) are not among them.
FAILED_STATES = frozenset({FAILED, TIMED_OUT, CRASHED})


class Colour(NamedTuple):
    """How a state looks: ``fill`` of its node or bar, ``stroke`` (its outline, and its
    colour as text on a light background), ``text`` drawn on the fill, and ``terminal``, the
    rich style of its name in a terminal (a named colour of the same hue, which terminals
    adapt to their theme)."""

    fill: str
    stroke: str
    text: str
    terminal: str


#: state -> colour. Failures are red, NotRun is hollow (the panel also dashes it).
COLOURS: dict[str, Colour] = {
    PENDING: Colour("#e5e7eb", "#9ca3af", "#111827", "dim"),
    RUNNING: Colour("#93c5fd", "#1d4ed8", "#0b1f44", "blue"),
    RETRYING: Colour("#fdba74", "#c2410c", "#431407", "dark_orange"),
    COMPLETED: Colour("#86efac", "#15803d", "#052e16", "green"),
    CACHED: Colour("#5eead4", "#0f766e", "#042f2e", "cyan"),
    FAILED: Colour("#ef4444", "#991b1b", "#ffffff", "bold red"),
    TIMED_OUT: Colour("#b91c1c", "#450a0a", "#ffffff", "bold red"),
    CRASHED: Colour("#7f1d1d", "#450a0a", "#ffffff", "bold red"),
    CANCELLED: Colour("#a8a29e", "#57534e", "#1c1917", "bright_black"),
    NOT_RUN: Colour("#ffffff", "#9ca3af", "#6b7280", "dim"),
}


def colour(state: str) -> Colour:
    """The colour of ``state`` (an unknown state looks Pending)."""
    return COLOURS.get(state, COLOURS[PENDING])
