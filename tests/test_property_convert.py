"""Property: any notebook from a small grammar of cells and tags either converts to a script
that compiles (and, when the notebook itself runs, computes the same final values), or fails
with one clear Nb2flowError naming the file."""

from __future__ import annotations

import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from notebooks.nbbuild import code, md, run_cells, run_script_flow, write

from nb2flow.codegen import convert_notebook
from nb2flow.errors import Nb2flowError
from nb2flow.runtime.core.unset import UNSET

NAMES = ["a", "b", "c"]
TEMPLATES = [
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
    "def f_{t}(x):\n    return x + {k}",
    "import math",
    "# just a comment",
    "{t} = sorted({s})\n{s}.sort()",
    "def g_{t}():\n    return {s} + [{k}]\n{t} = g_{t}()",
    "def h_{t}():\n    global {t}\n    {t} = [{k}]\nh_{t}()",
    "del {t}",
    "if {k} > 2:\n    del {t}",
    "try:\n    {t}\nexcept NameError:\n    {t} = [{k}]",
    "with open(__file__) as fh:\n    {t} = [{k}]",
    "try:\n    {t} = {s} + [1]\nexcept NameError as e:\n    {t} = [{k}]",
    "{t} = list(map(lambda q: q + {k}, {s}))",
    "if ({t} := [{k}]):\n    pass",
    "global {t}\n{t} = [{k}]",
    "{t}, {s} = {s}, {t}",
    "{t} = {s}\n{t}.append({k})",
    "def m_{t}(x):\n    x.append({k})\nm_{t}({s})",
    "m_a({t})",
]
TAGS = [
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
HEADINGS = ["# Load", "## Load", '# x = 1 """ \'', "no heading here", "# 💥 ../etc"]


@st.composite
def statements(draw):
    template = draw(st.sampled_from(TEMPLATES))
    return template.format(
        t=draw(st.sampled_from(NAMES)),
        s=draw(st.sampled_from(NAMES)),
        k=draw(st.integers(0, 5)),
    )


@st.composite
def cells(draw):
    if draw(st.integers(0, 4)) == 0:
        return md(draw(st.sampled_from(HEADINGS)))
    source = "\n".join(draw(st.lists(statements(), min_size=1, max_size=3)))
    tags = draw(st.lists(st.sampled_from(TAGS), max_size=2, unique=True))
    if "parameters" in tags:
        source = "a = [1]\nb = [2]"
    return code(source, *tags)


@settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(st.lists(cells(), max_size=7), st.sampled_from(["auto", "headings", "cells"]))
def test_convert_succeeds_with_a_working_script_or_fails_clearly(notebook_cells, split):
    with tempfile.TemporaryDirectory() as tmp:
        path = write(Path(tmp) / "random.ipynb", notebook_cells)
        try:
            conversion = convert_notebook(path, split=split)
        except Nb2flowError as exc:
            assert str(path) in str(exc)
            return
        compile(conversion.script, "random.py", "exec")
        try:
            expected = run_cells(path)
        except Exception:
            return  # the notebook itself fails top to bottom: nothing to compare
        if any("setup cell reads" in w for w in conversion.warnings):
            return  # setup code that needs task values cannot run at import (warned)
        result = run_script_flow(conversion.script, Path(tmp))
        for name in conversion.output_names:
            # UNSET: the notebook leaves the name unbound
            assert result[name] == expected.get(name, UNSET), name
