"""Static analysis: read/write sets per cell, tasks, and the plan (a networkx DiGraph)."""

from __future__ import annotations

from nb2flow.analysis.names import Names, analyse
from nb2flow.analysis.plan import build_plan

__all__ = ["Names", "analyse", "build_plan"]
