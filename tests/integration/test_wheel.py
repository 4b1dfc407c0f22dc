"""The Dockerfile's proof: the wheel, installed non-editable in a fresh venv, runs a worker.

No container engine can run images on these machines, so this test does what the
image does (`pip install .`, `python -m app.web.assets`, `cps worker`) without one.
Everything after the build runs from an empty directory outside the repository, with
no PYTHONPATH, so a module or data file the wheel lacks cannot be found in the source
tree instead.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import orjson
import pytest
from conftest import ROOT

# A cold pip cache downloads every dependency; a warm one installs them in seconds.
pytestmark = pytest.mark.timeout(900)

# What would let the venv's Python import the repository's editable copy instead.
SOURCE_TREE_VARIABLES = ("PYTHONPATH", "PYTHONHOME")

WHERE_PACKAGES_COME_FROM = (
    "import json, sysconfig, app, agents, tables; "
    "print(json.dumps({'site-packages': sysconfig.get_path('purelib'), "
    "**{m.__name__: m.__file__ for m in (app, agents, tables)}}))"
)


def _environment() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in SOURCE_TREE_VARIABLES}


def _run(command: list[str], cwd: Path) -> str:
    """The command's stdout; its whole output is the failure message when it fails."""
    result = subprocess.run(command, cwd=cwd, env=_environment(), capture_output=True,
                            text=True, timeout=600)
    assert result.returncode == 0, (f"{' '.join(command)} exited {result.returncode}:\n"
                                    f"{result.stdout}{result.stderr}")
    return result.stdout


def _copy_working_tree(destination: Path) -> None:
    """The files git would commit now (tracked or new, not ignored), so the stale
    build/ and *.egg-info of an earlier `pip install` cannot leak into the wheel."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others",
                             "--exclude-standard"], cwd=ROOT, capture_output=True,
                            check=True).stdout.decode()
    for name in filter(None, listed.split("\0")):
        source = ROOT / name
        if source.is_file():  # --cached also lists files deleted from the working tree
            target = destination / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)


def test_installed_wheel_starts_a_ready_worker(tmp_path: Path, make_worker) -> None:
    tree, dist, venv, elsewhere = (tmp_path / n for n in ("tree", "dist", "venv", "elsewhere"))
    elsewhere.mkdir()
    _copy_working_tree(tree)
    # Isolated, as `pip install .` in the image builds: the project's venv may hold a
    # setuptools older than [build-system] requires, and no `wheel`.
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(dist),
          str(tree)], cwd=elsewhere)
    (wheel,) = dist.glob("cps_engine-*.whl")

    _run([sys.executable, "-m", "venv", str(venv)], cwd=elsewhere)
    python, cps = str(venv / "bin" / "python"), str(venv / "bin" / "cps")
    _run([python, "-m", "pip", "install", "-q", str(wheel)], cwd=elsewhere)
    _run([python, "-m", "app.web.assets"], cwd=elsewhere)

    where = json.loads(_run([python, "-c", WHERE_PACKAGES_COME_FROM], cwd=elsewhere))
    for package in ("app", "agents", "tables"):
        assert Path(where[package]).is_relative_to(where["site-packages"]), where

    worker = make_worker()
    worker.command, worker.cwd = [cps, "worker"], elsewhere
    for name in SOURCE_TREE_VARIABLES:
        worker.env.pop(name, None)
    worker.start(timeout=120)
    status, body = worker.get("/ready")
    assert (status, orjson.loads(body)["ready"]) == (200, True), worker.tail()
    # Package data: dashboard.html comes in the wheel, the chart library from the assets step.
    assert worker.get("/dashboard")[0] == 200, worker.tail()
    assert worker.get("/static/uPlot.iife.min.js")[0] == 200, worker.tail()
