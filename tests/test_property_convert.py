"""Properties of the converter on notebooks drawn from small grammars of cells and tags.

* Valid notebooks (cells that run top to bottom, tags that make sense): the script runs and
  the flow returns the notebook's final values. Most examples get that far; the test says so
  (``hypothesis.event``, ``--hypothesis-show-statistics``) and fails if fewer than half do.
* Hostile notebooks (any tag, any heading, code that may fail): conversion gives a script
  that compiles (and computes the same values when the notebook itself runs), or one clear
  Nb2flowError naming the file, never a traceback.
"""

from __future__ import annotations

import os
import tempfile
from collections import Counter
from pathlib import Path

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from notebooks.nbbuild import code, md, run_cells, run_flow_values, write

from nb2flow.codegen import convert_notebook
from nb2flow.errors import Nb2flowError
from nb2flow.runtime.core.unset import UNSET

NAMES = ["a", "b", "c"]

#: statements that run whatever ran before them (every name starts bound: see PRELUDE)
VALID = [
    "{t} = [{k}]",
    "{t} = {s} + [{k}]",
    "{t}.append({k})",
    "{t}[0] = {k}",
    "{t} += [{k}]",
    "if {k} > 2:\n    {t} = [{k}]",
    "for i in range({k}):\n    {t} = {s} + [i]",
    "{t} = [v * 2 for v in {s}]",
    "%time {t} = [{k}]",
    "!true\n{t} = [len({s})]",
    "def f_{t}(x):\n    return x + [{k}]\n{t} = f_{t}({s})",
    "import math\n{t} = [math.floor({k} / 2)]",
    "# just a comment",
    "{t} = sorted({s})\n{s}.sort()",
    "def g_{t}():\n    return {s} + [{k}]\n{t} = g_{t}()",
    "def h_{t}():\n    global {t}\n    {t} = [{k}]\nh_{t}()",
    "try:\n    {t} = {s} + [1]\nexcept NameError as e:\n    {t} = [{k}]",
    "{t} = list(map(lambda q: q + {k}, {s}))",
    "if ({t} := [{k}]):\n    pass",
    "{t}, {s} = {s}, {t}",
    "{t} = {s}\n{t}.append({k})",
    "def m_{t}(x):\n    x.append({k})\nm_{t}({s})",
    "tmp = {s}\ndel tmp",
    "if {k} > 2:\n    del {t}\n{t} = [{k}]",
]
PRELUDE = "a = [1]\nb = [2]\nc = [3]"
HOSTILE = [
    *VALID,
    "with open(__file__) as fh:\n    {t} = [{k}]",
    "def f_{t}(x):\n    return x + {k}",
    "import math",
    "del {t}",
    "if {k} > 2:\n    del {t}",
    "try:\n    {t}\nexcept NameError:\n    {t} = [{k}]",
    "global {t}\n{t} = [{k}]",
    "m_a({t})",
]
#: tags of a valid notebook (task names are made unique by the grammar). Not `cache`: a
#: cached task's result is a copy, and a change through an alias made in an earlier task
#: (`a = b` there, `a.append(0)` here) then misses the other name (a known limit, see
#: docs/converter.md), as it does on the process and Dask runners.
VALID_TAGS = ["task", "retries:2", "timeout:5"]
HOSTILE_TAGS = [
    "task",
    "task:x",
    "task:load data",
    "task:class",
    "task:x():\n import os",
    "task:a'b\"",
    "skip",
    "setup",
    "parameters",
    "retries:2",
    "retries:x",
    "timeout:5",
    "cache",
    "after:x",
    "after:nope",
    "bogus",
]
HEADINGS = [
    "# Load",
    "## Load",
    "## Module",
    "## Param",
    '# x = 1 """ \'',
    "no heading",
    "# 💥 ../etc",
]


def statements(templates: list[str]) -> st.SearchStrategy[str]:
    return st.builds(
        lambda template, t, s, k: template.format(t=t, s=s, k=k),
        st.sampled_from(templates),
        st.sampled_from(NAMES),
        st.sampled_from(NAMES),
        st.integers(0, 5),
    )


def sources(templates: list[str]) -> st.SearchStrategy[str]:
    return st.lists(statements(templates), min_size=1, max_size=3).map("\n".join)


@st.composite
def valid_notebooks(draw: st.DrawFn) -> list:
    """A prelude binding every name (as parameters, or a plain cell), then cells of valid
    statements, some under headings, some tagged (task:NAME unique, after: earlier tasks)."""
    cells = [code(PRELUDE, "parameters") if draw(st.booleans()) else code(PRELUDE)]
    names: list[str] = []
    for i in range(draw(st.integers(1, 6))):
        if draw(st.integers(0, 3)) == 0:
            cells.append(md(draw(st.sampled_from(HEADINGS))))
        tags = draw(st.lists(st.sampled_from(VALID_TAGS), max_size=2, unique=True))
        if draw(st.integers(0, 3)) == 0:
            tags.append(f"task:t{i}")
            if names and draw(st.booleans()):
                tags.append(f"after:{draw(st.sampled_from(names))}")
            names.append(f"t{i}")
        cells.append(code(draw(sources(VALID)), *tags))
    return cells


@st.composite
def hostile_cells(draw: st.DrawFn) -> object:
    if draw(st.integers(0, 4)) == 0:
        return md(draw(st.sampled_from(HEADINGS)))
    source = draw(sources(HOSTILE))
    tags = draw(st.lists(st.sampled_from(HOSTILE_TAGS), max_size=2, unique=True))
    if "parameters" in tags:
        source = "a = [1]\nb = [2]"
    return code(source, *tags)


SPLITS = st.sampled_from(["auto", "headings", "cells"])
SETTINGS = settings(
    max_examples=int(os.environ.get("NB2FLOW_PROPERTY_EXAMPLES", "100")),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def check_conversion(notebook_cells: list, split: str) -> str:
    """Convert, run both sides and compare; returns what happened (for ``event``)."""
    with tempfile.TemporaryDirectory() as tmp:
        path = write(Path(tmp) / "random.ipynb", notebook_cells)
        try:
            conversion = convert_notebook(path, split=split, every_value=True)
        except Nb2flowError as exc:
            assert str(path) in str(exc)
            return "clear conversion error"
        compile(conversion.script, "random.py", "exec")
        try:
            expected = run_cells(path)
        except Exception:
            return "the notebook itself fails"
        if any("setup cell reads" in w for w in conversion.warnings):
            return "setup code needing task values (warned)"
        # each example caches in a folder of its own: another example's task of the same
        # name and code may read other globals
        saved = os.environ.get("NB2FLOW_RESULTS")
        os.environ["NB2FLOW_RESULTS"] = str(Path(tmp) / "results")
        try:
            result = run_flow_values(conversion, Path(tmp))
        finally:
            if saved is None:
                del os.environ["NB2FLOW_RESULTS"]
            else:
                os.environ["NB2FLOW_RESULTS"] = saved
        # every value the notebook leaves, from the task runs, as nb2flow check takes them
        assert list(result) == conversion.final_names
        for name in conversion.final_names:
            # UNSET: the notebook leaves the name unbound
            assert result[name] == expected.get(name, UNSET), name
        return "values compared"


def test_valid_notebooks_give_flows_computing_the_notebook_values():
    outcomes: Counter[str] = Counter()

    @SETTINGS
    @given(valid_notebooks(), SPLITS)
    def prop(notebook_cells: list, split: str) -> None:
        outcome = check_conversion(notebook_cells, split)
        event(outcome)
        outcomes[outcome] += 1

    prop()
    assert outcomes["values compared"] * 2 >= sum(outcomes.values()), outcomes


@SETTINGS
@given(st.lists(hostile_cells(), max_size=7), SPLITS)
def test_hostile_notebooks_convert_to_a_working_script_or_fail_clearly(notebook_cells, split):
    event(check_conversion(notebook_cells, split))
