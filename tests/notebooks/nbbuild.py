"""Build small notebooks for the converter's tests (imported as ``notebooks.nbbuild``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook


def code(source: str, *tags: str) -> Any:
    cell = new_code_cell(source)
    if tags:
        cell.metadata["tags"] = list(tags)
    return cell


def md(source: str) -> Any:
    return new_markdown_cell(source)


def write(path: Path, cells: list[Any], **metadata: Any) -> Path:
    """Write a version-4 notebook with ``cells`` to ``path`` (cell ids fixed: deterministic)."""
    nb = new_notebook(cells=cells, metadata=metadata)
    for i, cell in enumerate(nb.cells):
        cell["id"] = f"cell-{i}"
    nbformat.write(nb, str(path))
    return Path(path)


def edge(plan: Any, source: str, target: str) -> dict[str, Any]:
    """A plan's edge as plain data: its kind and variables."""
    e = plan.edge(source, target)
    return {"kind": e.kind, "vars": list(e.vars)}


def run_cells(path: Path, **overrides: Any) -> dict[str, Any]:
    """Run a notebook's code cells in order in one namespace, as Jupyter would, leaving out
    cells tagged ``skip`` (as the flow does); ``overrides`` replace the parameters cell's
    values, as papermill does. Returns the namespace."""
    from nb2flow.notebook.magics import to_python

    nb = nbformat.read(str(path), as_version=4)
    namespace: dict[str, Any] = {"__name__": "__notebook__"}
    for cell in nb.cells:
        if cell.cell_type != "code" or "skip" in cell.metadata.get("tags", []):
            continue
        translation = to_python(cell.source, "cell")
        for module in translation.imports:
            namespace[module] = __import__(module)
        exec(compile(translation.code, "cell", "exec"), namespace)
        if "parameters" in cell.metadata.get("tags", []):
            namespace.update(overrides)
    return namespace


def run_script_flow(script: str, directory: Path, **params: Any) -> Any:
    """Import a generated script (not as __main__) from ``directory`` and call its flow."""
    import runpy

    path = Path(directory) / "generated_flow.py"
    path.write_text(script, encoding="utf-8")
    module = runpy.run_path(str(path), run_name="generated_flow")
    return module["main"](**params)


def convert_returning_all(path: Path, **options: Any) -> Any:
    """Convert ``path`` into a flow returning every value the notebook leaves (``--outputs``
    naming them all): what the converter's tests compare with the notebook's namespace."""
    from nb2flow.codegen import convert_notebook

    every = convert_notebook(path, **options).final_names
    return convert_notebook(path, outputs=every, **options)


def run_flow_values(conversion: Any, directory: Path, **params: Any) -> dict[str, Any]:
    """Every value the notebook leaves, from the task runs of the flow of ``conversion``
    (converted with ``every_value=True``), as ``nb2flow check`` takes them."""
    import runpy

    from nb2flow.check.values import run_for_values

    assert conversion.plan.every_value, "convert with every_value=True"
    path = Path(directory) / "generated_flow.py"
    path.write_text(conversion.script, encoding="utf-8")
    module = runpy.run_path(str(path), run_name="generated_flow")
    return run_for_values(module["main"], params, conversion.plan.returned_by())[1]
