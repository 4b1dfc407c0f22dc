"""The package's build: pyproject.toml's, with the dashboard's chart library fetched first.

Every build (`pip install .`, `pip install -e .`, `pip wheel .`, `python -m build`) runs
build_py, which here first makes sure app/web/static/ holds the pinned uPlot release
(app/web/assets.py): it asks the ordinary npm client for the package by name and version,
checks the tarball against the release's integrity and each file against its hash. A copy
already there and matching its hashes is kept, so only a build that lacks it needs npm.
"""

from __future__ import annotations

import base64
import hashlib
import importlib.util
import io
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path
from types import ModuleType

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent
UPLOT_PACKAGE = "uplot"


def _load_assets() -> ModuleType:
    """app/web/assets.py by its path: the build imports nothing else of the project."""
    spec = importlib.util.spec_from_file_location("chart_assets", ROOT / "app/web/assets.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


assets = _load_assets()


def _npm_pack(release: str, static: Path) -> bytes:
    """The release's tarball, as the npm client on the PATH hands it over."""
    npm = shutil.which("npm")
    if npm is None:
        raise SystemExit(f"{static} holds no checked copy of the dashboard's chart library "
                         f"({release}), and npm, which fetches it, is not on the PATH: install "
                         "npm (Debian: `apt-get install npm`) and build again.")
    with tempfile.TemporaryDirectory() as scratch:
        result = subprocess.run([npm, "pack", release], cwd=scratch, capture_output=True,
                                text=True, timeout=300)
        tarballs = list(Path(scratch).glob("*.tgz"))
        if result.returncode != 0 or len(tarballs) != 1:
            raise SystemExit(f"`npm pack {release}` failed (exit {result.returncode}), so the "
                             f"dashboard's chart library is missing:\n{result.stderr}")
        return tarballs[0].read_bytes()


def fetch_chart_library(static: Path = assets.STATIC) -> None:
    """Put the pinned uPlot files in `static`, unless they are there already.

    Failures raise SystemExit: an editable install turns a build_py exception into a warning.
    """
    if not assets.unverified(static):
        return
    release = f"{UPLOT_PACKAGE}@{assets.UPLOT_VERSION}"
    tarball = _npm_pack(release, static)
    integrity = "sha512-" + base64.b64encode(hashlib.sha512(tarball).digest()).decode()
    if integrity != assets.UPLOT_INTEGRITY:
        raise SystemExit(f"{release} from npm failed its integrity check: {integrity}, "
                         f"pinned {assets.UPLOT_INTEGRITY}")
    static.mkdir(parents=True, exist_ok=True)
    with tarfile.open(fileobj=io.BytesIO(tarball), mode="r:gz") as archive:
        for name in assets.FILES:
            (static / name).write_bytes(archive.extractfile(f"package/dist/{name}").read())
    if altered := assets.unverified(static):
        raise SystemExit(f"{release}'s {', '.join(altered)} differ from the pinned hashes")


class BuildWithChartLibrary(build_py):
    """build_py, after the chart library is fetched into the source tree (where an editable
    install reads it too)."""

    def run(self) -> None:
        fetch_chart_library()
        super().run()


if __name__ == "__main__":
    setup(cmdclass={"build_py": BuildWithChartLibrary})
