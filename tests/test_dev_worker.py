"""`cps dev`'s worker: started again when it exits to restart, reported when it fails."""

from __future__ import annotations

import asyncio
import sys

import click
import pytest

from app.cli.dev import DevWorker, supervise
from app.cli.worker import EXIT_RESTART


def _worker(tmp_path, script: str) -> DevWorker:
    return DevWorker([sys.executable, "-c", script], {}, tmp_path / "worker.log")


def test_a_worker_that_exits_to_restart_is_started_again(tmp_path):
    # The first run exits to restart; the second keeps running, as a worker does.
    marker = tmp_path / "ran-once"
    script = (f"import pathlib, sys, time\n"
              f"marker = pathlib.Path({str(marker)!r})\n"
              f"if not marker.exists():\n"
              f"    marker.touch()\n"
              f"    sys.exit({EXIT_RESTART})\n"
              f"time.sleep(30)\n")
    worker = _worker(tmp_path, script)
    try:
        async def run() -> None:
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(supervise(worker, every_s=0.05), timeout=3)
        asyncio.run(run())
        assert worker.restarts == 1
        assert worker.process.poll() is None
    finally:
        worker.stop()
    assert worker.process.poll() is not None


def test_a_worker_that_fails_ends_the_demo_with_its_log(tmp_path):
    worker = _worker(tmp_path, "print('settings are wrong', flush=True); raise SystemExit(1)")
    worker.process.wait(10)
    with pytest.raises(click.ClickException, match="exited with 1:\nsettings are wrong"):
        asyncio.run(supervise(worker, every_s=0.05))
    assert worker.restarts == 0
