"""The Dockerfile's proof: the wheel, installed non-editable in a fresh venv, runs a worker
whose dashboard draws its charts.

No container engine can run images on these machines, so this test does what the
image does (`pip wheel .`, which fetches the chart library with npm, then installing the
wheel and `cps worker`) without one. Everything after the build runs from an empty
directory outside the repository, with no PYTHONPATH, so a module or data file the wheel
lacks cannot be found in the source tree instead.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import orjson
import pytest
from chromium import browser, sign_in, wait_for
from conftest import ROOT
from selenium import webdriver
from selenium.webdriver.common.by import By
from tokens import VIEW_TOKEN

# A cold pip cache downloads every dependency; a warm one installs them in seconds.
pytestmark = pytest.mark.timeout(900)

# What would let the venv's Python import the repository's editable copy instead.
SOURCE_TREE_VARIABLES = ("PYTHONPATH", "PYTHONHOME")

# The dist/ files of the registry's uplot 1.6.32 tarball (`npm pack uplot@1.6.32`, then
# tar, wc -c and sha256sum by hand): bytes and SHA-256.
RELEASED_CHART_FILES = {
    "uPlot.iife.min.js": (51081,
                          "19c8d4c6ad88929a79f4ae49d6f7161566dfd0ba3d15cc495e974f787eb78f1f"),
    "uPlot.min.css": (1857, "df630c6a8d6f8eeaff264b50f73ce5b114f646ffd9a0bb74f049b0a00135fa04"),
}

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
    _copy_working_tree(tree)  # without app/web/static/ (not in git): the build fetches it
    # Isolated, as the image's `pip wheel .` builds: the project's venv may hold a
    # setuptools older than [build-system] requires, and no `wheel`.
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(dist),
          str(tree)], cwd=elsewhere)
    (wheel,) = dist.glob("cps_engine-*.whl")

    _run([sys.executable, "-m", "venv", str(venv)], cwd=elsewhere)
    python, cps = str(venv / "bin" / "python"), str(venv / "bin" / "cps")
    _run([python, "-m", "pip", "install", "-q", str(wheel)], cwd=elsewhere)

    where = json.loads(_run([python, "-c", WHERE_PACKAGES_COME_FROM], cwd=elsewhere))
    for package in ("app", "agents", "tables"):
        assert Path(where[package]).is_relative_to(where["site-packages"]), where

    worker = make_worker(CPS_MONITOR_INTERVAL_S="1")
    worker.command, worker.cwd = [cps, "worker"], elsewhere
    for name in SOURCE_TREE_VARIABLES:
        worker.env.pop(name, None)
    worker.start(timeout=120)
    status, body = worker.get("/ready")
    assert (status, orjson.loads(body)["ready"]) == (200, True), worker.tail()
    # Package data: dashboard.html, and the chart library the wheel's build fetched.
    assert worker.get("/dashboard")[0] == 200, worker.tail()
    installed = Path(where["app"]).parent / "web" / "static"
    for name, (size, sha256) in RELEASED_CHART_FILES.items():
        status, body = worker.get(f"/static/{name}")
        assert (status, len(body), hashlib.sha256(body).hexdigest()) == (200, size, sha256), name
        assert (installed / name).read_bytes() == body
    _dashboard_draws_charts_and_says_when_it_cannot(worker.base, installed)


def _dashboard_draws_charts_and_says_when_it_cannot(base: str, installed: Path) -> None:
    """Charts drawn in Chromium; then, the installed files deleted, the page says the charts
    are missing and goes on updating its tables, with no script error."""
    driver = browser()
    try:
        driver.get(base + "/dashboard")
        sign_in(driver, VIEW_TOKEN)
        drawn = _state_once(driver, "canvases")
        assert drawn["errors"] == [] and not drawn["no_charts_shown"], drawn
        for name in RELEASED_CHART_FILES:
            (installed / name).unlink()
        driver.execute_cdp_cmd("Network.enable", {})  # the files were cached for a day
        driver.execute_cdp_cmd("Network.setCacheDisabled", {"cacheDisabled": True})
        driver.refresh()
        without = _state_once(driver, "updates")
        assert without["no_charts_shown"] and without["canvases"] == 0, without
        assert without["errors"] == [], without
        assert "update failed" not in driver.find_element(By.ID, "status").text
    finally:
        driver.quit()


def _state_once(driver: webdriver.Chrome, what: str) -> dict:
    """The page's state once its `what` is above 0, or once a script failed."""
    def reached(driver: webdriver.Chrome) -> dict | None:
        state = _state(driver)
        return state if state[what] or state["errors"] else None
    return wait_for(driver, reached, timeout=30)


def _state(driver: webdriver.Chrome) -> dict:
    return driver.execute_script(
        "return {updates: window.dashboard.updates, errors: window.dashboard.errors,"
        " canvases: document.querySelectorAll('.uplot canvas').length,"
        " no_charts_shown: document.querySelector('#no-charts:not([hidden])') !== null};")
