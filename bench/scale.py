"""`python -m bench.scale` (`make scale`): throughput against 1, 2 and 3 instances per processor
on three brokers (issue 19).

Three KRaft brokers as `make cluster` runs them (replication 3, min.insync 2, SASL/SCRAM, each
service its own principal with its ACLs), on private ports (MARKETLOG_SCALE_PORT, default
28110-28115; state in .state/bench-scale, wiped first), and a private PostgreSQL (a free port).
For N = 1, 2, 3: fresh topics of PARTITIONS partitions (6: every N divides them) and a fresh
database, N instances each of the ledger, the matcher and the projector (split topology) and one
gateway; a warm-up, the idle cores, then open-loop XML orders (bench/loadgen.py) stepped up a
grid of rates by bench/sweep.py (climbs until two steps fail, then one refinement), each step
measured as the e2e suite measures it (bench/e2e_bench.py: latency, projection lag, stages, CPU
per process).

Per N: the highest sustained rate (sweep.sustained: all answered, achieved >= 95 % of offered,
p99 and the last third's p99 under P99_LIMIT_MS), p50/p99 at REFERENCE_RATE, CPU µs per order per
process kind (the three brokers together, gateway, ledger, matcher, projector, PostgreSQL, the
load generator) and per instance. Then `projection`: what the per-instance figures would carry
with each process on cores of its own. Results: bench/results/<date>T<HHMM>-scale.json and .md.
On a 2-core VM more instances share the same two cores: the measured curve shows what an instance
costs, not what it adds.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import functools
import json
import os
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

from bench.__main__ import machine
from bench.cluster_env import ClusterEnv
from bench.cpu import CpuMeter, kafka_pid, postmaster_pid
from bench.e2e_bench import UNLIMITED, idle_cores, measure
from bench.loadgen import StepResult
from bench.orders import xml_setup
from bench.sweep import Plan, best, sweep
from infra.cluster import GRANTS
from infra.local import STATE
from infra.stack import ServiceProcs, free_port, gateway_ports
from services.common.config import Settings
from services.common.topics import provision

INSTANCES = (1, 2, 3)
PARTITIONS = 6  # 1, 2 and 3 instances each own the same number of partitions
PROCESSORS = ("ledger", "matcher", "projector")
KINDS = ("broker", "gateway", *PROCESSORS, "postgres", "loadgen")
BROKERS = 3
# Three brokers on two cores keep both cores busy at any rate (the processors' transaction loops
# take what CPU is left): p50 0.3-0.9 s and p99 0.5-1.3 s already at 50-100 orders/s (a quick run,
# docs/cluster.md: p99 0.6-1.2 s at 300/s). A bound under that finds 0 for every N; 1 s finds
# the rate at which the answers still keep pace, no backlog growing, the same for every N.
P99_LIMIT_MS = 1000.0
REFERENCE_RATE = 100
PLAN = Plan(
    rates=[100, 200, 300, 400, 600, 800],
    step_seconds=15.0,  # 3 N x up to 7 steps: the whole run in ~13 minutes
    warm_up_seconds=20.0,  # each N's fresh processes; the brokers' JIT gets FIRST_WARM_UP_S
    warm_up_rate=100,
    refine_steps=1,
)
FIRST_WARM_UP_S = 45.0  # the brokers' JIT needs most of a minute of transactions
QUICK = Plan(
    rates=[50, 100], step_seconds=5.0, warm_up_seconds=5.0, warm_up_rate=50, refine_steps=0
)
RESULTS = Path(__file__).resolve().parent / "results"


# -- the figures: pure ---------------------------------------------------------------------------
def kind_of(process: str) -> str:
    """``kafka-2`` -> broker, ``ledger@1`` -> ledger; the rest are their own kind."""
    return "broker" if process.startswith("kafka-") else process.partition("@")[0]


def by_kind(per_process: dict[str, float]) -> dict[str, float]:
    """CPU µs per order summed over the processes of each kind."""
    found = dict.fromkeys(KINDS, 0.0)
    for process, us in per_process.items():
        found[kind_of(process)] = found.get(kind_of(process), 0.0) + us
    return {kind: round(us, 1) for kind, us in found.items()}


def per_instance(kinds: dict[str, float], instances: int) -> dict[str, float]:
    """Each processor instance's share of an order's CPU (a broker's, for the brokers)."""
    shares = {p: kinds[p] / instances for p in PROCESSORS} | {"broker": kinds["broker"] / BROKERS}
    return {k: round(v, 1) for k, v in shares.items()}


def capacity(us_per_order: float) -> float:
    """Orders per second one core carries at this CPU cost per order."""
    return round(1e6 / us_per_order, 1) if us_per_order > 0 else float("inf")


def projection(kinds: dict[str, float], partitions: int = PARTITIONS) -> list[dict]:
    """Orders/s each kind would carry with k = 1..partitions instances of each processor, every
    process on a core of its own (the figures of one measured N, at its cost per order): the
    processors scale with k up to the partitions; the single gateway, PostgreSQL (one server,
    counted as one core) and the three brokers (one core each, leadership spread) do not."""
    fixed = {
        "gateway": capacity(kinds["gateway"]),
        "postgres": capacity(kinds["postgres"]),
        "broker": capacity(kinds["broker"] / BROKERS),
    }
    rows = []
    for k in range(1, partitions + 1):
        carried = {p: round(k * capacity(kinds[p]), 1) for p in PROCESSORS} | fixed
        bound = min(carried, key=carried.get)
        rows.append({"instances": k, "orders_per_s": carried, "bound": bound})
    return rows


# -- the run ---------------------------------------------------------------------------------------
class ScaleEnv(ClusterEnv):
    """The run's three brokers and database (bench/cluster_env.py), with settings per principal
    on fresh topics, grants and a database per N."""

    def fresh(self) -> dict[str | None, Settings]:
        """Settings per principal (None: infra's own) on fresh topics, ACLs and database."""
        common = self.fresh_fields(PARTITIONS)
        found = {p: self.cluster.settings(p, **common) for p in (None, "gateway", *PROCESSORS)}
        provision(found[None])
        self.cluster.grant(GRANTS, prefix=common["topic_prefix"])
        return found


def scale_env() -> ScaleEnv:
    """State in .state/bench-scale, brokers on MARKETLOG_SCALE_PORT .. +5 (default 28110),
    PostgreSQL on MARKETLOG_SCALE_PG_PORT or a free port (another worktree's PostgreSQL may hold
    any fixed one)."""
    port = int(os.environ.get("MARKETLOG_SCALE_PORT", "28110"))
    pg_port = int(os.environ.get("MARKETLOG_SCALE_PG_PORT", "0")) or free_port()
    return ScaleEnv(STATE / "bench-scale", port, pg_port)


class Stack:
    """N instances of each processor and one gateway, each as its own principal."""

    def __init__(self, settings: dict[str | None, Settings], logs: Path, instances: int):
        self.admin = uuid.uuid4().hex
        self.ports, port_env = gateway_ports()
        env = {
            "MARKETLOG_TOPOLOGY": "split",
            "MARKETLOG_ADMIN_KEY": self.admin,
            **port_env,
            **UNLIMITED,
        }
        self.procs = {s: ServiceProcs(settings[s], logs, **env) for s in ("gateway", *PROCESSORS)}
        self.instances = instances

    def start(self) -> None:
        self.procs["projector"].start("projector@0")  # applies the migrations first
        for service in PROCESSORS:
            names = [f"{service}@{i}" for i in range(self.instances)]
            self.procs[service].start(*(n for n in names if n != "projector@0"))
        self.procs["gateway"].start("gateway")

    def pids(self) -> dict[str, int]:
        return {n: p.pid for procs in self.procs.values() for n, p in procs.procs.items()}

    def stop(self) -> None:
        for procs in self.procs.values():
            procs.stop_all()


def meter_for(env: ScaleEnv, stack: Stack) -> CpuMeter:
    brokers = {f"kafka-{n.node_id}": kafka_pid(n) for n in env.cluster.nodes}
    processes = {**stack.pids(), **brokers, "loadgen": os.getpid()}
    return CpuMeter(processes, {"postgres": postmaster_pid(env.postgres)})


async def drive(settings: Settings, stack: Stack, meter: CpuMeter, plan: Plan) -> dict:
    client, bodies = await xml_setup(stack.ports["xml"])
    try:
        warm_up = StepResult("warm-up", plan.warm_up_rate, plan.warm_up_seconds)
        await client.step(warm_up, plan.warm_up_rate, bodies)
        await asyncio.sleep(plan.settle_seconds)
        idle = await idle_cores(meter, 8.0)
        measure_at = functools.partial(
            measure, "xml", client=client, payload=bodies, settings=settings, meter=meter,
            plan=plan, p99_limit_ms=P99_LIMIT_MS,
        )  # fmt: skip
        steps = await sweep(measure_at, plan)
        return {"idle": idle, "warm_up": warm_up.summary(), "steps": steps}
    finally:
        client.close()


def one_n(env: ScaleEnv, instances: int, plan: Plan, reference: int) -> dict:
    """Everything measured with `instances` of each processor."""
    print(f"== {instances} instance(s) of each processor", flush=True)
    settings = env.fresh()
    logs = env.home / "logs" / f"n{instances}"
    logs.mkdir(parents=True, exist_ok=True)
    stack = Stack(settings, logs, instances)
    began = time.monotonic()
    try:
        stack.start()
        started_s = round(time.monotonic() - began, 1)
        found = asyncio.run(drive(settings[None], stack, meter_for(env, stack), plan))
    finally:
        stack.stop()
    return figures_of(instances, found, reference) | {"started_s": started_s}


def figures_of(instances: int, found: dict, reference: int) -> dict:
    """One N's figures from its steps: the highest sustained, the reference step, CPU by kind."""
    steps = found["steps"]
    for step in steps:
        step["cpu_us_by_kind"] = by_kind(step["cpu_us_per_order"])
        step["cpu_us_per_instance"] = per_instance(step["cpu_us_by_kind"], instances)
    top = best(steps)
    at = next((s for s in steps if s["offered_per_s"] == reference), None)
    return {
        "instances": instances,
        "max_sustained_per_s": top["offered_per_s"] if top else 0,
        "at_max": _brief(top),
        "reference": _brief(at),
        "idle": found["idle"],
        "warm_up": found["warm_up"],
        "steps": steps,
    }


def _brief(step: dict | None) -> dict | None:
    if step is None:
        return None
    return {
        "offered_per_s": step["offered_per_s"],
        "achieved_per_s": step["achieved_per_s"],
        "p50_ms": step["latency_ms"]["p50"],
        "p99_ms": step["latency_ms"]["p99"],
        "cpu_us_by_kind": step["cpu_us_by_kind"],
        "cpu_us_per_instance": step["cpu_us_per_instance"],
        "cpu_us_all": round(sum(step["cpu_us_by_kind"].values()), 1),
        "vm_cores": step["vm_cores"],
    }


def run(
    plan: Plan, reference: int, counts: tuple[int, ...] = INSTANCES, first_warm_up: float = 0.0
) -> dict:
    """Every N in `counts`, one after the other on the same brokers; the first N's warm-up
    lasts at least `first_warm_up` seconds (the brokers' JIT)."""
    began = time.monotonic()
    with scale_env() as env:
        first = dataclasses.replace(plan, warm_up_seconds=max(plan.warm_up_seconds, first_warm_up))
        per_n = [one_n(env, n, first if i == 0 else plan, reference) for i, n in enumerate(counts)]
    projected = {  # at the highest sustained step: the most orders per transaction measured
        f"from N={r['instances']} at {src['offered_per_s']}/s": projection(src["cpu_us_by_kind"])
        for r in per_n
        if (src := r["at_max"] or r["reference"])
    }
    return {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "seconds": round(time.monotonic() - began, 1),
        "machine": machine(),
        "partitions": PARTITIONS,
        "brokers": BROKERS,
        "gateways": 1,
        "p99_limit_ms": P99_LIMIT_MS,
        "reference_rate": reference,
        "plan": plan.describe(),
        "per_n": per_n,
        "projection": projected,
    }


# -- the report ------------------------------------------------------------------------------------
def _kinds_cells(kinds: dict[str, float]) -> str:
    return " | ".join(f"{kinds[k]:,.0f}" for k in KINDS)


def markdown(result: dict) -> str:
    limit, ref = result["p99_limit_ms"], result["reference_rate"]
    lines = [
        f"# Scale curve {result['when']} ({result['seconds']:.0f} s)",
        "",
        f"Three brokers (replication 3, SASL/SCRAM, ACLs), {result['partitions']} partitions, "
        f"split topology, one gateway, XML orders open loop. Sustained: everything answered, "
        f">= 95 % of the offered rate, p99 (and the last third's) < {limit:.0f} ms.",
        "",
        f"Machine: `{json.dumps(result['machine'])}`",
        "",
        f"| N | max sustained/s | p50 / p99 ms at {ref}/s | VM busy / steal at {ref}/s | "
        "idle cores (all) |",
        "|---:|---:|---|---|---:|",
    ]
    for r in result["per_n"]:
        at = r["reference"] or {}
        vm = at.get("vm_cores", {})
        lines.append(
            f"| {r['instances']} | {r['max_sustained_per_s']} | {at.get('p50_ms')} / "
            f"{at.get('p99_ms')} | {vm.get('busy')} / {vm.get('steal')} | {r['idle']['all']} |"
        )
    lines += [
        "",
        f"CPU µs per order at {ref}/s, by kind (all instances of a kind together):",
        "",
        "| N | " + " | ".join(KINDS) + " | all |",
        "|---:|" + "---:|" * (len(KINDS) + 1),
    ]
    for r in result["per_n"]:
        if r["reference"]:
            at = r["reference"]
            lines.append(f"| {r['instances']} | {_kinds_cells(at['cpu_us_by_kind'])} | "
                         f"{at['cpu_us_all']:,.0f} |")  # fmt: skip
    lines += ["", "Per instance (a processor instance's share; a broker's):", ""]
    for r in result["per_n"]:
        if r["reference"]:
            per = r["reference"]["cpu_us_per_instance"]
            lines.append(
                f"- N={r['instances']}: " + ", ".join(f"{k} {v:,.0f}" for k, v in per.items())
            )
    lines += ["", "Every step:", "", "| N | offered/s | achieved/s | p50 ms | p99 ms | "
              "last third p99 | projection lag p99 ms | VM busy/steal | sustained |",
              "|---:|---:|---:|---:|---:|---:|---:|---|---|"]  # fmt: skip
    for r in result["per_n"]:
        for s in r["steps"]:
            lat, vm = s["latency_ms"], s["vm_cores"]
            lines.append(
                f"| {r['instances']} | {s['offered_per_s']} | {s['achieved_per_s']} | "
                f"{lat['p50']} | {lat['p99']} | {s['p99_last_third_ms']} | "
                f"{s['projection_lag_ms']['p99']} | {vm['busy']}/{vm['steal']} | "
                f"{'yes' if s['sustained'] else 'no'} |"
            )
    lines += ["", "On paper, each process on a core of its own (orders/s per kind; the bound):", ""]
    for source, rows in result["projection"].items():
        lines += [f"{source}:", "", "| instances | " + " | ".join(KINDS[:-1]) + " | bound |",
                  "|---:|" + "---:|" * (len(KINDS) - 1) + "---|"]  # fmt: skip
        for row in rows:
            cells = " | ".join(f"{row['orders_per_s'][k]:,.0f}" for k in KINDS[:-1])
            lines.append(f"| {row['instances']} | {cells} | {row['bound']} |")
        lines.append("")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.scale", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="short steps: proves the harness")
    parser.add_argument("--instances", type=int, nargs="*", default=list(INSTANCES))
    args = parser.parse_args(argv)
    plan = QUICK if args.quick else PLAN
    reference, first_warm_up = (50, 0.0) if args.quick else (REFERENCE_RATE, FIRST_WARM_UP_S)
    result = run(plan, reference, tuple(args.instances), first_warm_up)
    out = RESULTS / "quick" if args.quick else RESULTS
    out.mkdir(parents=True, exist_ok=True)
    stem = out / f"{datetime.now(UTC):%Y-%m-%dT%H%M}-scale"
    stem.with_suffix(".json").write_text(json.dumps(result, indent=1) + "\n")
    stem.with_suffix(".md").write_text(markdown(result))
    print(markdown(result))
    print(f"results: {stem}.json and .md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
