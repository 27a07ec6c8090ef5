"""The one CPU meter: CPU seconds per process from /proc, and the whole VM's busy and stolen cores.

Every process group is counted from /proc/<pid>/stat: utime + stime of the process, and for a
*tree* (PostgreSQL's postmaster, whose backends come and go) its live children plus the
children it has reaped (cutime + cstime), so a backend that exits keeps its share. The VM's
steal (what the hypervisor gave other guests) is recorded for every step and reported, never
corrected for: a step with much steal measured a busy host as much as Marketlog, and the reader
judges it. ``steal_peak`` is the most stolen in any quarter second: a step's average hides the
bursts that decide its p99 (the slowest 1 % of a 20 s step is 0.2 s of orders).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Awaitable
from dataclasses import dataclass
from pathlib import Path

from infra.local import LocalKafka, LocalPostgres

TICKS = os.sysconf("SC_CLK_TCK")
STEAL_SAMPLE_SECONDS = 0.25


def _stat(pid: int) -> list[str] | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return None


def cpu_seconds(pid: int, reaped: bool = False) -> float:
    """utime + stime of a process (+ cutime + cstime: its children that exited)."""
    fields = _stat(pid)
    if fields is None:
        return 0.0
    return sum(int(f) for f in fields[11 : 15 if reaped else 13]) / TICKS


def children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        fields = _stat(int(stat.parent.name))
        if fields is not None and int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def tree_seconds(pid: int) -> float:
    """A process, its live children and the children it reaped."""
    return cpu_seconds(pid, reaped=True) + sum(cpu_seconds(c) for c in children(pid))


def kafka_pid(kafka: LocalKafka) -> int:
    return int(kafka.pid_file.read_text())


def postmaster_pid(postgres: LocalPostgres) -> int:
    return int((postgres.data / "postmaster.pid").read_text().split()[0])


class CpuMeter:
    """CPU seconds per named process: single processes, and trees (``tree_seconds``)."""

    def __init__(self, processes: dict[str, int], trees: dict[str, int] | None = None) -> None:
        self.processes, self.trees = processes, trees or {}

    @classmethod
    def for_stack(
        cls, services: dict[str, int], kafka: LocalKafka, postgres: LocalPostgres
    ) -> CpuMeter:
        """Every service, the broker, PostgreSQL and this process (the load generator)."""
        processes = {**services, "kafka": kafka_pid(kafka), "loadgen": os.getpid()}
        return cls(processes, {"postgres": postmaster_pid(postgres)})

    def sample(self) -> dict[str, float]:
        found = {name: cpu_seconds(pid) for name, pid in self.processes.items()}
        return found | {name: tree_seconds(pid) for name, pid in self.trees.items()}


def vm_seconds() -> tuple[float, float]:
    """The whole VM's busy and stolen CPU seconds since boot (/proc/stat)."""
    fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(f) for f in fields)
    return (user + nice + system + irq + softirq) / TICKS, steal / TICKS


@dataclass
class Metered:
    spent: dict[str, float]  # CPU seconds per process during the step
    vm: dict[str, float]  # the VM's busy and stolen cores, and the steal peak
    seconds: float


async def metered(meter: CpuMeter, step: Awaitable) -> Metered:
    """Run one step (an awaitable) under the meter."""
    before, vm_before, started = meter.sample(), vm_seconds(), time.perf_counter()
    done = asyncio.Event()
    peak = asyncio.create_task(steal_peak(done))
    try:
        await step
    finally:
        done.set()
    after, vm_after, elapsed = meter.sample(), vm_seconds(), time.perf_counter() - started
    busy, steal = (round((b - a) / elapsed, 3) for a, b in zip(vm_before, vm_after, strict=True))
    vm = {"busy": busy, "steal": steal, "steal_peak": round(await peak, 3)}
    return Metered({name: after[name] - before[name] for name in after}, vm, elapsed)


async def steal_peak(done: asyncio.Event) -> float:
    """The most cores stolen in any STEAL_SAMPLE_SECONDS until ``done``."""
    peak, last, at = 0.0, vm_seconds()[1], time.perf_counter()
    while not done.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(done.wait(), STEAL_SAMPLE_SECONDS)
        stolen, now = vm_seconds()[1], time.perf_counter()
        if now - at >= STEAL_SAMPLE_SECONDS / 2:  # not the last sliver: a tick would weigh a core
            peak = max(peak, (stolen - last) / (now - at))
        last, at = stolen, now
    return peak
