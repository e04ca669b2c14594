"""Build the JupyterLab 4 / Notebook 7 extension into ``nb2flow/labextension/`` (committed).

    .venv/bin/python labextension/build.py          # npm ci, tsc, @jupyterlab/builder
    .venv/bin/python labextension/build.py --check  # exit 1 if the build is stale

Offline-safe: ``jupyter labextension build`` fetches ``@jupyterlab/core-meta`` from GitHub,
so this calls ``@jupyterlab/builder``'s ``build-labextension.js`` with ``--core-path`` set to
the installed JupyterLab's ``staging`` folder (only the npm registry is reached, by
``npm ci``). The built assets are committed, so installing nb2flow needs no Node.js; the
sources' digest is written beside them (``build.json``) and ``tests/test_labextension.py``
fails when the sources changed without a rebuild.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
OUT = HERE.parent / "nb2flow" / "labextension"
#: what the built assets are made from (node_modules and build output excluded)
SOURCES = ("package.json", "package-lock.json", "tsconfig.json", "src", "style", "schema")


def source_digest() -> str:
    """sha256 over the extension's sources (paths and bytes, in a fixed order)."""
    h = hashlib.sha256()
    for name in SOURCES:
        path = HERE / name
        files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
        for f in files:
            h.update(f.relative_to(HERE).as_posix().encode() + b"\0")
            h.update(f.read_bytes() + b"\0")
    return h.hexdigest()


def built_digest() -> str | None:
    try:
        return json.loads((OUT / "build.json").read_text())["source_sha256"]
    except (OSError, ValueError, KeyError):
        return None


def build() -> None:
    import jupyterlab

    core = Path(jupyterlab.__file__).parent / "staging"
    npm = shutil.which("npm")
    node = shutil.which("node")
    if npm is None or node is None:
        sys.exit("build.py: Node.js and npm are needed to build the extension")
    if not (HERE / "node_modules" / "@jupyterlab" / "builder").is_dir():
        subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=HERE, check=True)
    subprocess.run([node, "node_modules/typescript/bin/tsc"], cwd=HERE, check=True)
    shutil.rmtree(OUT, ignore_errors=True)
    builder = "node_modules/@jupyterlab/builder/lib/build-labextension.js"
    subprocess.run([node, builder, "--core-path", str(core), "."], cwd=HERE, check=True)
    (OUT / "build.json").write_text(json.dumps({"source_sha256": source_digest()}) + "\n")
    print(f"built {OUT}")


if __name__ == "__main__":
    if sys.argv[1:] == ["--check"]:
        fresh = built_digest() == source_digest()
        print("labextension: " + ("up to date" if fresh else "stale: run labextension/build.py"))
        sys.exit(0 if fresh else 1)
    build()
