"""Static analysis: read/write sets per cell, tasks, and the typed plan codegen renders.

Stages (see :mod:`nb2flow.analysis.pipeline`): ``cells`` -> ``grouping`` -> ``hoisting`` ->
``dataflow`` -> :class:`~nb2flow.analysis.plan.Plan`.
"""

from __future__ import annotations

from nb2flow.analysis.names import Names, analyse
from nb2flow.analysis.pipeline import build_plan
from nb2flow.analysis.plan import Plan

__all__ = ["Names", "Plan", "analyse", "build_plan"]
