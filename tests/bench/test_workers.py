"""`cps bench --workers`: the engine once per worker count, the first count for the ratios."""

from __future__ import annotations

import subprocess
import sys
import time

import click
import pytest

from app.bench.report import ratios
from app.bench.runner import Result, engine_name, implementations, is_engine, stop
from app.cli.bench import positive_counts
from app.config.settings import Settings


def test_positive_counts_keep_their_order_and_drop_repeats():
    assert positive_counts("1") == (1,)
    assert positive_counts("2, 1,2,4") == (2, 1, 4)


@pytest.mark.parametrize("text", ["0", "-1", "x", "1,,2", ""])
def test_a_bad_worker_count_is_refused(text):
    with pytest.raises(click.BadParameter):
        positive_counts(text)


def test_one_engine_per_count_each_named_for_it():
    table = implementations(Settings.from_env({}), (1, 2, 4))
    engines = {name: impl for name, impl in table.items() if is_engine(name)}
    assert {name: impl.workers for name, impl in engines.items()} == {
        "engine": 1, "engine-x2": 2, "engine-x4": 4}
    assert "2 workers" in engines["engine-x2"].title
    assert [engine_name(n) for n in (1, 3)] == ["engine", "engine-x3"]
    assert not is_engine("raw") and not is_engine("engineer")


def test_ratios_come_from_the_first_engine_run():
    def result(name: str, events_per_s: float) -> Result:
        return Result(name, name, 1000, 100, seconds=1.0, events_per_s=events_per_s)

    results = [result("raw", 10_000), result("engine-x2", 2_000), result("engine", 5_000)]
    assert ratios(results)["d/a"] == 0.2


def test_stopping_a_worker_that_exited_and_was_reaped_gives_no_usage():
    # The bench polls its workers while they run; one that exited is reaped by that poll,
    # and stopping it then must not fail the whole run.
    process = subprocess.Popen([sys.executable, "-c", "pass"], start_new_session=True)
    while process.poll() is None:
        time.sleep(0.01)
    assert stop(process) is None


def test_stopping_a_running_worker_gives_its_usage():
    process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"],
                               start_new_session=True)
    assert stop(process).ru_maxrss > 0
