"""CPU used by one process and by the whole machine between two moments (Linux /proc).

The live phase reports what an implementation spends per event while fed
at a steady rate, and how busy the machine was meanwhile: on a small
machine shared with the broker and the load generator, a delay that grows
without bound is a machine that ran out of cores.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

TICKS_PER_S = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class CpuSample:
    process_s: float
    machine_busy_s: float
    machine_total_s: float


def sample(pids: Iterable[int], proc: Path = Path("/proc")) -> CpuSample | None:
    """CPU seconds so far of the processes `pids` together (user + system) and of the
    machine; None where /proc is not."""
    process_ticks = 0
    try:
        for pid in pids:
            stat = (proc / str(pid) / "stat").read_text()
            # Fields after the command name, which is in parentheses and may hold spaces.
            fields = stat.rsplit(")", 1)[1].split()
            process_ticks += int(fields[11]) + int(fields[12])  # utime + stime
        machine = (proc / "stat").read_text().splitlines()[0]
    except (OSError, IndexError):
        return None
    # cpu user nice system idle iowait irq softirq steal (guest time is inside user).
    ticks = [int(value) for value in machine.split()[1:9]]
    idle = ticks[3] + ticks[4]
    return CpuSample(process_ticks / TICKS_PER_S, (sum(ticks) - idle) / TICKS_PER_S,
                     sum(ticks) / TICKS_PER_S)


def cpu_us_per_event(before: CpuSample | None, after: CpuSample | None,
                     events: int) -> int | None:
    """The process's CPU µs per event between two samples."""
    if before is None or after is None or events <= 0:
        return None
    return round((after.process_s - before.process_s) * 1e6 / events)


def machine_busy_percent(before: CpuSample | None, after: CpuSample | None) -> int | None:
    """How busy all the machine's cores were between two samples, in % of their time."""
    if before is None or after is None or after.machine_total_s <= before.machine_total_s:
        return None
    busy = after.machine_busy_s - before.machine_busy_s
    return round(100 * busy / (after.machine_total_s - before.machine_total_s))
