"""CPU accounting of the live phase, from /proc files."""

from __future__ import annotations

import os

from app.bench import cpu
from app.bench.cpu import CpuSample


def _proc(tmp_path, pid: int, utime: int, stime: int, machine: list[int]):
    (tmp_path / str(pid)).mkdir(exist_ok=True)
    # The command name may hold spaces and parentheses; fields 14 and 15 are utime and stime.
    rest = ["S", "1", "1", "1", "0", "-1", "0", "0", "0", "0", "0", str(utime), str(stime), "0"]
    (tmp_path / str(pid) / "stat").write_text(f"{pid} (cps (worker) x) " + " ".join(rest))
    (tmp_path / "stat").write_text("cpu  " + " ".join(map(str, machine)) + " 0 0\ncpu0 1 2\n")
    return tmp_path


def test_a_process_and_the_machine_are_read_from_proc(tmp_path):
    tick = cpu.TICKS_PER_S
    proc = _proc(tmp_path, 42, utime=3 * tick, stime=tick,
                 machine=[tick, 0, tick, 6 * tick, 2 * tick, 0, 0, 0])
    assert cpu.sample([42], proc) == CpuSample(process_s=4.0, machine_busy_s=2.0,
                                               machine_total_s=10.0)


def test_several_workers_are_summed(tmp_path):
    tick = cpu.TICKS_PER_S
    machine = [tick, 0, tick, 6 * tick, 2 * tick, 0, 0, 0]
    _proc(tmp_path, 42, utime=3 * tick, stime=tick, machine=machine)
    proc = _proc(tmp_path, 43, utime=tick, stime=tick, machine=machine)
    assert cpu.sample([42, 43], proc).process_s == 6.0
    assert cpu.sample([42, 999], proc) is None  # a worker gone: no partial sum claimed


def test_cpu_per_event_and_the_busy_share_between_two_samples():
    before, after = CpuSample(1.0, 10.0, 40.0), CpuSample(2.5, 25.0, 60.0)
    assert cpu.cpu_us_per_event(before, after, events=2_000) == 750
    assert cpu.machine_busy_percent(before, after) == 75


def test_nothing_is_claimed_without_both_samples(tmp_path):
    assert cpu.sample([999_999_999], tmp_path) is None
    sampled = CpuSample(1.0, 1.0, 1.0)
    assert cpu.cpu_us_per_event(None, sampled, events=10) is None
    assert cpu.cpu_us_per_event(sampled, sampled, events=0) is None
    assert cpu.machine_busy_percent(sampled, sampled) is None


def test_this_process_can_be_sampled():
    assert cpu.sample([os.getpid()]) is not None
