"""End to end: orders through the XML/TCP, HTTP and private-channel gateways of the whole system.

Ledger, matcher, projector and gateway run as processes against the bench broker and database;
the open-loop generator (bench/loadgen.py, accounts and orders from bench/orders.py) offers
orders at fixed rates, step by step (bench/sweep.py), until the system saturates. Per step:
latency from each order's due time to its decision's answer (p50/p99/p99.9/max), the achieved
rate, the projection lag (answer -> the order's row visible in PostgreSQL, sampled), the CPU each
process spent per order and the VM's busy and stolen cores (bench/cpu.py), and each order's
latency split by stage from the log's timestamps (bench/stages.py). The report is
bench/e2e_report.py.

Before the sweep, one step per surface at a fixed reference rate (REFERENCE_RATE, whatever the
system can do) gives the CPU each process spends per order at the same load from run to run:
that is the figure to compare before and after a change. The run's ``headline`` is the best
sustained surface: its rate, p99 and the CPU per order over every process (broker, PostgreSQL
and the load generator included) at that step.
"""

from __future__ import annotations

import asyncio
import functools
import time
import uuid

import psycopg

from bench import e2e_report, stages
from bench.cpu import CpuMeter, metered
from bench.loadgen import StepResult
from bench.orders import CONNECTIONS, SYMBOLS, channel_setup, http_setup, xml_setup
from bench.sweep import P99_LIMIT_MS, QUICK, Plan, best, sustained, sweep
from infra.stack import EVERY_SERVICE, ServiceProcs, gateway_ports, topology_services

# each topology with its partitions: the engine folds one sequence, the split scales out by four
TOPOLOGIES = {"engine": 1, "split": 4}
# the sweep runs on the engine (the faster); the split gets the reference step, for comparison
SWEPT = {"engine"}
REFERENCE_RATE, QUICK_REFERENCE_RATE = 500, 50
UNLIMITED = {  # the generator's few clients send what many clients would
    f"MARKETLOG_{surface}_{limit}": "1000000"
    for surface in ("XML", "HTTP", "CHANNEL")
    for limit in ("RATE", "BURST")
}


async def projection_lag(url: str, result: StepResult, stop: asyncio.Event) -> list[float]:
    """Answer -> row visible in projection.orders, for one answered order in 50 (ms)."""
    lags, seen, pending, stopped = [], 0, {}, None
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        while True:
            fresh = result.answers[seen:]
            pending.update(
                (order_id, at) for i, (order_id, _, at) in enumerate(fresh, seen) if i % 50 == 0
            )
            seen += len(fresh)
            if pending:
                query = "SELECT order_id FROM projection.orders WHERE order_id = ANY(%s)"
                rows = await (await conn.execute(query, [list(pending)])).fetchall()
                now = time.perf_counter()
                for (order_id,) in rows:
                    lags.append((now - pending.pop(order_id)) * 1000)
            if stop.is_set():
                stopped = stopped or time.perf_counter()
                if not pending or time.perf_counter() - stopped > 30:
                    return sorted(lags)
            await asyncio.sleep(0.02)  # 20 ms resolution: cheap for the database being measured


async def measure(
    surface: str, rate: float, *, client, payload, settings, meter, plan,
    p99_limit_ms: float = P99_LIMIT_MS,
) -> dict:  # fmt: skip
    """One step at one offered rate: its latency, lag, stages, CPU and the host's steal."""
    result = StepResult(surface, rate, plan.step_seconds)
    ends = stages.log_ends(settings)
    stop = asyncio.Event()
    lag_task = asyncio.create_task(projection_lag(settings.database_url, result, stop))
    cpu = await metered(meter, client.step(result, rate, payload))
    stop.set()
    lags = await lag_task
    step = result.summary()
    step["projection_lag_ms"] = {
        "samples": len(lags),
        **{k: e2e_report.percentile(lags, p) for k, p in (("p50", 50), ("p99", 99), ("max", 100))},
    }
    step["stages_ms"] = stages.split(settings, ends, result)
    answered = max(1, step["answered"])
    step["cpu_us_per_order"] = {k: round(v * 1e6 / answered, 1) for k, v in cpu.spent.items()}
    step["vm_cores"] = cpu.vm
    step["sustained"] = sustained(step, p99_limit_ms)
    print(
        f"  {surface} {rate}/s -> {step['achieved_per_s']}/s p99 {step['latency_ms']['p99']} ms "
        f"sustained={step['sustained']} (VM busy {cpu.vm['busy']} cores, steal "
        f"{cpu.vm['steal']}, peak {cpu.vm['steal_peak']})",
        flush=True,
    )
    return step


async def idle_cores(meter: CpuMeter, seconds: float) -> dict:
    """Cores each process spends with the stack up and no order coming (after the warm-up)."""
    cpu = await metered(meter, asyncio.sleep(seconds))
    cores = {k: round(v / cpu.seconds, 3) for k, v in cpu.spent.items() if k != "loadgen"}
    return {"seconds": seconds, "cores": cores, "all": round(sum(cores.values()), 3)}


async def drive(
    settings, ports: dict, admin: str, meter: CpuMeter, plan: Plan, reference: int, full: bool
) -> tuple[dict, dict, dict]:
    xml_client, bodies = await xml_setup(ports["xml"])
    http_client, requests = await http_setup(ports["http"], admin)
    channel_client, lines = await channel_setup(ports["private"], http_client, admin)
    surfaces = (
        ("xml", xml_client, bodies),
        ("http", http_client, requests),
        ("private", channel_client, lines),
    )
    try:
        for n, (_, client, payload) in enumerate(surfaces):  # the broker's JIT warms up first
            seconds = plan.rewarm_seconds if n else plan.warm_up_seconds
            warm_up = StepResult("warm-up", plan.warm_up_rate, seconds)
            await client.step(warm_up, plan.warm_up_rate, payload)
        await asyncio.sleep(plan.settle_seconds)
        idle = await idle_cores(meter, plan.step_seconds / 2)
        found, at_reference = {}, {}
        for surface, client, payload in surfaces:
            measure_at = functools.partial(
                measure, surface, client=client, payload=payload, settings=settings, meter=meter,
                plan=plan,
            )  # fmt: skip
            at_reference[surface] = await measure_at(reference)
            found[surface] = await sweep(measure_at, plan) if full else [at_reference[surface]]
        return found, at_reference, idle
    finally:
        for _, client, _ in surfaces:
            client.close()


def run(env) -> dict:
    """Every surface in each topology (infra/stack.py PROCESSORS), one stack after the other on
    fresh topics; a surface is named with its topology, e.g. ``xml (engine)``. Topologies not
    in SWEPT are measured at the reference rate only."""
    plan = QUICK if env.quick else Plan()
    reference = QUICK_REFERENCE_RATE if env.quick else REFERENCE_RATE
    surfaces, at_reference, idle = {}, {}, {}
    for topology, partitions in TOPOLOGIES.items():
        settings = env.settings(partitions=partitions)
        logs = env.home / "logs" / f"e2e-{topology}"
        logs.mkdir(parents=True, exist_ok=True)
        admin = uuid.uuid4().hex
        ports, port_env = gateway_ports()
        procs = ServiceProcs(
            settings,
            logs,
            MARKETLOG_TOPOLOGY=topology,
            MARKETLOG_ADMIN_KEY=admin,
            **port_env,
            **UNLIMITED,
        )
        procs.start(*topology_services(EVERY_SERVICE, topology))
        try:
            pids = {name: proc.pid for name, proc in procs.procs.items()}
            meter = CpuMeter.for_stack(pids, env.kafka, env.postgres)
            found, at, idle[topology] = asyncio.run(
                drive(settings, ports, admin, meter, plan, reference, topology in SWEPT)
            )
        finally:
            procs.stop_all()
        surfaces |= {f"{s} ({topology})": steps for s, steps in found.items()}
        at_reference |= {f"{s} ({topology})": step for s, step in at.items()}
    return figures(env, plan, surfaces, at_reference) | {"idle": idle}


def best_surface(surfaces: dict) -> dict:
    """The best sustained surface: rate, p99 and CPU per order over every process there."""
    steps = {s: b for s, st in surfaces.items() if (b := best(st))}
    if not steps:
        return {"orders_per_s": 0, "p99_ms": None, "cpu_us_per_order": None, "surface": None}
    surface, step = max(steps.items(), key=lambda kv: kv[1]["offered_per_s"])
    return {
        "orders_per_s": step["offered_per_s"],
        "p99_ms": step["latency_ms"]["p99"],
        "cpu_us_per_order": round(sum(step["cpu_us_per_order"].values()), 1),
        "surface": surface,
    }


def figures(env, plan: Plan, surfaces: dict, at_reference: dict) -> dict:
    ceiling = (env.results.get("kafka_ceiling") or {}).get("produce_consume", {})
    ceiling = ceiling.get("median_records_per_s")
    rates = {s: (b["offered_per_s"] if (b := best(st)) else 0) for s, st in surfaces.items()}
    found = {
        "headline": best_surface(surfaces),
        "reference_step": at_reference,
        "plan": plan.describe(),
        "connections": CONNECTIONS,
        "symbols": len(SYMBOLS),
        "partitions": TOPOLOGIES,
        "rate_limits": "raised for the generator's clients",
        "max_sustained_per_s": rates,
        "vm_steal_cores": e2e_report.steal_over(surfaces),
        "kafka_ceiling_records_per_s": ceiling,
        "e2e_to_ceiling": {s: round(r / ceiling, 4) if ceiling else None for s, r in rates.items()},
        "steps": surfaces,
    }
    found["plot"] = e2e_report.plot(surfaces, env.out / "e2e_bench.png")
    return found


summary = e2e_report.summary
