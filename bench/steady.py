"""Steady XML load against a running Marketlog, for profiling one rate at a time.

    MARKETLOG_XML_RATE=1000000 MARKETLOG_XML_BURST=1000000 python -m infra up
    python -m bench.steady --rate 250 --steps 10 --seconds 20

Offers orders open-loop (bench/loadgen.py) at a fixed rate, step after step, through the XML
gateway of the stack `python -m infra up` started (same MARKETLOG_* settings, so a private stack
with its own MARKETLOG_STATE and ports works too), and prints per step the answer latency and
the CPU each process spent, in cores and in µs per order, and where the latency went
(bench/stages.py). docs/performance.md was measured so.
Each invocation opens fresh accounts, so it can be repeated against the same stack.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import time

from bench import stages
from bench.cpu import STEAL_SAMPLE_SECONDS, CpuMeter, kafka_pid, metered, postmaster_pid
from bench.loadgen import StepResult
from bench.orders import xml_setup
from infra.stack import EVERY_SERVICE, KAFKA, POSTGRES
from services.common.config import Settings


def service_pids() -> dict[str, int]:
    """The running services by pid (honcho starts each through a shell: take the python)."""
    found = {}
    table = subprocess.run(["ps", "-eo", "pid=,args="], capture_output=True, text=True).stdout
    for line in table.splitlines():
        pid, _, args = line.strip().partition(" ")
        for name in EVERY_SERVICE:
            if args.startswith("python") and f"services.{name} serve" in args:
                found[name] = int(pid)
    return found


def cluster_meter() -> tuple[CpuMeter, Settings]:
    """`make cluster`'s three brokers, its PostgreSQL, read as infra's own principal."""
    from infra import cluster

    brokers = {f"kafka-{n.node_id}": kafka_pid(n) for n in cluster.CLUSTER.nodes}
    processes = {**service_pids(), **brokers, "loadgen": os.getpid()}
    meter = CpuMeter(processes, {"postgres": postmaster_pid(cluster.POSTGRES)})
    return meter, cluster.CLUSTER.settings()


async def run(rate: float, steps: int, seconds: float, on_cluster: bool = False) -> None:
    port = int(os.environ.get("MARKETLOG_XML_PORT", "12345"))
    client, bodies = await xml_setup(port, first_account=int(time.time()) * 1000)
    if on_cluster:
        meter, settings = cluster_meter()
    else:
        meter = CpuMeter.for_stack(service_pids(), KAFKA, POSTGRES)
        settings = Settings(kafka=KAFKA.bootstrap)  # the stack's broker, whatever the env says
    try:
        for step in range(1, steps + 1):
            result = StepResult("xml", rate, seconds)
            ends = stages.log_ends(settings)
            cpu = await metered(meter, client.step(result, rate, bodies))
            spent, vm, elapsed = cpu.spent, cpu.vm, cpu.seconds
            summary = result.summary()
            orders = max(1, summary["answered"])
            print(f"step {step}: {summary['achieved_per_s']}/s, latency ms {summary['latency_ms']}")
            print("  cores   ", {name: round(s / elapsed, 2) for name, s in spent.items()})
            print(
                f"  VM       busy {vm['busy']} cores, steal {vm['steal']} "
                f"(peak {vm['steal_peak']} in {STEAL_SAMPLE_SECONDS} s)"
            )
            print("  µs/order", {name: round(s * 1e6 / orders) for name, s in spent.items()})
            split = stages.split(settings, ends, result)
            if split is not None:
                print("  stages  ", stages.describe(split))
    finally:
        client.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rate", type=float, default=250.0, help="orders per second")
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=20.0, help="per step")
    parser.add_argument("--cluster", action="store_true", help="against `make cluster`")
    args = parser.parse_args()
    asyncio.run(run(args.rate, args.steps, args.seconds, args.cluster))


if __name__ == "__main__":
    main()
