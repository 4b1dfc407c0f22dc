"""setup.py's build step: the dashboard's chart library comes checked from npm, or the build
stops and says why; a checked copy already in place needs no npm."""

from __future__ import annotations

import importlib.util
import io
import shutil
import tarfile
from pathlib import Path

import pytest

from app.web import assets

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def build():
    """setup.py as a module (its `setup()` runs only as a script)."""
    spec = importlib.util.spec_from_file_location("project_setup", ROOT / "setup.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A PATH of one empty folder: no npm until a test puts one there."""
    folder = tmp_path / "bin"
    folder.mkdir()
    monkeypatch.setenv("PATH", str(folder))
    return folder


def checked_copy(destination: Path) -> Path:
    """The files of the package's own build (make setup fetched them)."""
    destination.mkdir()
    for name in assets.FILES:
        shutil.copy(assets.STATIC / name, destination / name)
    return destination


def test_a_build_without_npm_says_what_to_install(build, path: Path, tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as stopped:
        build.fetch_chart_library(tmp_path / "static")
    message = str(stopped.value)
    assert "npm" in message and "is not on the PATH" in message, message
    assert "uplot@1.6.32" in message, message


def test_a_checked_copy_needs_no_npm(build, path: Path, tmp_path: Path) -> None:
    static = checked_copy(tmp_path / "static")
    before = {name: (static / name).read_bytes() for name in assets.FILES}
    build.fetch_chart_library(static)
    assert {name: (static / name).read_bytes() for name in assets.FILES} == before


def test_an_altered_copy_is_fetched_again(build, path: Path, tmp_path: Path) -> None:
    static = checked_copy(tmp_path / "static")
    with (static / "uPlot.min.css").open("a") as css:
        css.write("body { color: red }")
    with pytest.raises(SystemExit, match="npm"):  # no npm here to fetch it with
        build.fetch_chart_library(static)


def test_a_tarball_failing_its_integrity_is_refused(build, path: Path,
                                                     tmp_path: Path) -> None:
    """npm is asked for the release by name and version; what it hands over is checked
    before any file is written."""
    forged = tmp_path / "forged.tgz"
    with tarfile.open(forged, "w:gz") as archive:
        for name in assets.FILES:
            member = tarfile.TarInfo(f"package/dist/{name}")
            member.size = len(b"forged")
            archive.addfile(member, io.BytesIO(b"forged"))
    asked = tmp_path / "asked"
    npm = path / "npm"
    npm.write_text(f'#!/bin/sh\necho "$@" > {asked}\n/bin/cp {forged} uplot-1.6.32.tgz\n')
    npm.chmod(0o755)
    static = tmp_path / "static"
    with pytest.raises(SystemExit, match="integrity check"):
        build.fetch_chart_library(static)
    assert asked.read_text().split() == ["pack", "uplot@1.6.32"]
    assert not any(static.glob("*"))
