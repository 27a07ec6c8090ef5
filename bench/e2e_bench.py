"""End to end: orders through the XML/TCP and HTTP gateways of the whole running system.

Ledger, matcher, projector and gateway run as processes against the bench broker and database;
an open-loop generator (bench/loadgen.py) offers orders at fixed rates, step by step, until the
system saturates. Per step: latency from each order's due time to its decision's answer
(HdrHistogram p50/p99/p99.9/max), the achieved rate, the projection lag (answer -> the order's
row visible in PostgreSQL, sampled), the CPU each process spent per order, and each order's
latency split by stage from the log's timestamps (bench/stages.py) — where the time goes. A
rate is *sustained* when everything offered was answered within the step, the achieved rate is
within 5% of the offered one, p99 < 50 ms, and the last third's p99 is under 50 ms too (no
growing backlog). After the grid, two more steps halve the gap between the highest sustained
rate and the lowest failing one above it (``refinement``). A failed step during which the
hypervisor stole CPU from the VM is kept but discarded and measured again (``spoiled``).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import os
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

import psycopg

from bench import stages
from bench.loadgen import HttpClient, StepResult, XmlClient
from infra.local import LocalKafka, LocalPostgres
from tests.support import ServiceProcs, free_port

SERVICES = ("projector", "ledger", "matcher", "gateway")
# Low steps too: on a slow-moment VM p99 is 20-25 ms at 20-50 orders/s but over 50 ms at 100/s,
# and a sweep starting at 100 then reports 0 however close it came.
RATES = [25, 50, 100, 175, 250, 375, 500, 750, 1000, 1500, 2000, 3000, 4000, 8000, 12000, 20000]
# 20 s: with the broker's pauses gone (docs/performance.md) a step meets at most one stall of the
# VM, which in 10 s steps (p99 = the 25th-worst order at 250/s) alone failed a step.
STEP_SECONDS = 20.0
WARM_UP_RATE, WARM_UP_SECONDS = 300, 60.0
CONNECTIONS = 200
SYMBOLS = [f"B{i}" for i in range(4)]
P99_LIMIT_MS = 50.0
# after the grid, halve the gap between the highest sustained rate and the lowest failing one
# above it this many times: the grid's steps are 33-50 % apart, too coarse for a headline that
# should repeat within 15 %
REFINE_STEPS, REFINE_RESOLUTION = 2, 0.1
# A failed step during which the hypervisor took more than this much CPU from the VM measured the
# host's other guests as much as Marketlog (08:01-08:21 on 2026-11-22: 0.26-0.95 of a core stolen,
# nothing sustained above 25 orders/s): it is kept, marked discarded, and measured once more — at
# most this many times per surface, so a host busy for minutes costs minutes, not the budget.
STEAL_LIMIT_CORES, STEAL_RETRIES = 0.1, 2
# ... or more than STEAL_PEAK_CORES in any STEAL_SAMPLE_SECONDS: at 100 orders/s on 2026-11-22 two
# steps with 0.08-0.09 core stolen on average but 1.32 in one quarter second had p99 200-202 ms,
# the two between them (peak 0.12) 51-65 ms.
STEAL_PEAK_CORES, STEAL_SAMPLE_SECONDS = 0.5, 0.25
TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except FileNotFoundError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime + stime


def children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(stat.parent.name))
        except (FileNotFoundError, ProcessLookupError):
            continue
    return found


def machine_seconds() -> tuple[float, float]:
    """The whole VM's busy and stolen CPU seconds since boot (/proc/stat): a step whose steal is
    high ran on a hypervisor busy with other guests, and its figures say so."""
    fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(f) for f in fields)
    return (user + nice + system + irq + softirq) / TICKS, steal / TICKS


def vm_cores(before: tuple[float, float], after: tuple[float, float], elapsed: float) -> dict:
    """Cores the VM was busy and had stolen between two ``machine_seconds`` readings."""
    busy, steal = (round((b - a) / elapsed, 3) for a, b in zip(before, after, strict=True))
    return {"busy": busy, "steal": steal}


class CpuMeter:
    """CPU seconds per process group: every service, Kafka, PostgreSQL, and the generator."""

    def __init__(self, services: dict[str, int], kafka: LocalKafka, postgres: LocalPostgres):
        self.pids = {name: [pid] for name, pid in services.items()}
        self.pids["kafka"] = [int(kafka.pid_file.read_text())]
        self.postmaster = int((postgres.data / "postmaster.pid").read_text().split()[0])
        self.pids["loadgen"] = [os.getpid()]

    def sample(self) -> dict[str, float]:
        self.pids["postgres"] = [self.postmaster, *children(self.postmaster)]
        return {name: sum(cpu_seconds(p) for p in pids) for name, pids in self.pids.items()}


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
                rows = await (
                    await conn.execute(
                        "SELECT order_id FROM projection.orders WHERE order_id = ANY(%s)",
                        [list(pending)],
                    )
                ).fetchall()
                now = time.perf_counter()
                for (order_id,) in rows:
                    lags.append((now - pending.pop(order_id)) * 1000)
            if stop.is_set():
                stopped = stopped or time.perf_counter()
                if not pending or time.perf_counter() - stopped > 30:
                    return sorted(lags)
            await asyncio.sleep(0.02)  # 20 ms resolution: cheap for the database being measured


def percentile(values: list[float], p: float) -> float | None:
    return round(values[min(len(values) - 1, int(len(values) * p / 100))], 2) if values else None


def sustained(step: dict) -> bool:
    return (
        step["answered"] == step["sent"]
        and step["errors"] == 0
        and step["achieved_per_s"] >= 0.95 * step["offered_per_s"]
        and step["latency_ms"]["p99"] < P99_LIMIT_MS
        and step["p99_last_third_ms"] < P99_LIMIT_MS
    )


async def xml_setup(port: int, first_account: int = 700_000) -> tuple[XmlClient, list[list[bytes]]]:
    client = XmlClient("127.0.0.1", port, CONNECTIONS)
    await client.open()
    accounts = [str(first_account + i) for i in range(CONNECTIONS)]
    for first in range(0, len(accounts), 20):  # the gateway caps elements per request
        chunk = accounts[first : first + 20]
        body = "<create>" + "".join(f'<account id="{a}" balance="1000000000"/>' for a in chunk)
        for symbol in SYMBOLS:
            body += (
                f'<symbol sym="{symbol}">'
                + "".join(f'<account id="{a}">1000000</account>' for a in chunk)
                + "</symbol>"
            )
        reply = await client.request((body + "</create>").encode())
        assert b"<error" not in reply, reply[:500]
    bodies = [
        [
            f'<transactions id="{a}"><order sym="{SYMBOLS[(n + k) % len(SYMBOLS)]}" '
            f'amount="{1 if k % 2 else -1}" limit="{99 + (n + k) % 3}"/></transactions>'.encode()
            for k in range(12)
        ]
        for n, a in enumerate(accounts)
    ]
    return client, bodies


async def http_setup(port: int, admin: str) -> tuple[HttpClient, list[bytes]]:
    client = HttpClient("127.0.0.1", port, CONNECTIONS)
    await client.open()
    keys = []
    for i in range(50):
        status, body = await client.call(
            HttpClient.encode(
                "POST",
                "/accounts",
                admin,
                {"account_id": str(800_000 + i), "balance": "1000000000"},
            )
        )
        assert status == 201, body
        keys.append((str(800_000 + i), json.loads(body)["api_key"]))
    for account, _ in keys:
        for symbol in SYMBOLS:
            status, body = await client.call(
                HttpClient.encode(
                    "POST",
                    f"/symbols/{symbol}/issue",
                    admin,
                    {"account_id": account, "qty": "1000000"},
                )
            )
            assert status == 200, body
    requests = [
        HttpClient.encode(
            "POST",
            "/orders",
            key,
            {
                "symbol": SYMBOLS[(n + k) % len(SYMBOLS)],
                "side": "BUY" if k % 2 else "SELL",
                "qty": "1",
                "price": str(99 + (n + k) % 3),
                "tif": "GTC",
                "stp": "NONE",
            },
        )
        for n, (_, key) in enumerate(keys)
        for k in range(12)
    ]
    return client, requests


def refinement(steps: list[dict]) -> int | None:
    """The next rate to try: halfway between the highest sustained rate and the lowest failing
    one above it, while they are more than REFINE_RESOLUTION apart; None when there is no such
    pair (nothing sustained, or nothing failed) or it is already close enough."""
    top = best(steps)
    if top is None:
        return None
    low = top["offered_per_s"]
    above = [s["offered_per_s"] for s in counted(steps) if not s["sustained"]]
    above = [rate for rate in above if rate > low]
    if not above or min(above) - low <= REFINE_RESOLUTION * low:
        return None
    return round((low + min(above)) / 2)


def spoiled(step: dict) -> bool:
    """A failed step during which the hypervisor stole more than STEAL_LIMIT_CORES on average or
    STEAL_PEAK_CORES in a burst."""
    vm = step["vm_cores"]
    stolen = vm["steal"] > STEAL_LIMIT_CORES or vm["steal_peak"] > STEAL_PEAK_CORES
    return not step["sustained"] and stolen


async def sweep(measure_at: Callable[[int], Awaitable[dict]], settle: float = 2.0) -> list[dict]:
    """Steps up the grid of rates until two fail or the offered rate is not reached, then refines.
    A spoiled step, grid or refinement, is kept marked and measured again (STEAL_RETRIES in all)."""
    steps: list[dict] = []
    retries = STEAL_RETRIES

    async def step_at(rate: int) -> dict:
        nonlocal retries
        step = await measure_at(rate)
        while spoiled(step) and retries:
            retries -= 1
            vm = step["vm_cores"]
            step["discarded"] = (
                f"steal {vm['steal']} cores (peak {vm['steal_peak']}); measured again"
            )
            steps.append(step)
            await asyncio.sleep(settle)
            step = await measure_at(rate)
        steps.append(step)
        await asyncio.sleep(settle)  # let queues settle between steps
        return step

    failures = 0
    for rate in RATES:
        step = await step_at(rate)
        failures = 0 if step["sustained"] else failures + 1
        if failures == 2 or step["achieved_per_s"] < 0.7 * rate:
            break
    for _ in range(REFINE_STEPS):
        rate = refinement(steps)
        if rate is None:
            break
        await step_at(rate)
    return sorted(steps, key=lambda s: s["offered_per_s"])


async def metered(meter: CpuMeter, step: Awaitable) -> tuple[dict[str, float], dict, float]:
    """Run one step: each process's CPU seconds during it, the VM's busy and stolen cores (and
    the most stolen in any STEAL_SAMPLE_SECONDS), and the step's seconds."""
    before, vm_before, started = meter.sample(), machine_seconds(), time.perf_counter()
    done = asyncio.Event()
    peak = asyncio.create_task(steal_peak(done))
    try:
        await step
    finally:
        done.set()
    after, vm_after, elapsed = meter.sample(), machine_seconds(), time.perf_counter() - started
    spent = {name: after[name] - before[name] for name in after}
    vm = vm_cores(vm_before, vm_after, elapsed)
    vm["steal_peak"] = round(await peak, 3)
    return spent, vm, elapsed


async def steal_peak(done: asyncio.Event) -> float:
    """The most cores stolen in any STEAL_SAMPLE_SECONDS until ``done``. A step's average hides
    the bursts that decide its p99 (the slowest 1 % of a 20 s step is 0.2 s of orders)."""
    peak, last, at = 0.0, machine_seconds()[1], time.perf_counter()
    while not done.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(done.wait(), STEAL_SAMPLE_SECONDS)
        stolen, now = machine_seconds()[1], time.perf_counter()
        if now - at >= STEAL_SAMPLE_SECONDS / 2:  # not the last sliver: a tick would weigh a core
            peak = max(peak, (stolen - last) / (now - at))
        last, at = stolen, now
    return peak


async def measure(surface: str, rate: float, client, payload, settings, meter) -> dict:
    """One step at one offered rate: its latency, lag, stages and CPU."""
    result = StepResult(surface, rate, STEP_SECONDS)
    ends = stages.log_ends(settings)
    stop = asyncio.Event()
    lag_task = asyncio.create_task(projection_lag(settings.database_url, result, stop))
    spent, vm, _ = await metered(meter, client.step(result, rate, payload))
    stop.set()
    lags = await lag_task
    step = result.summary()
    step["projection_lag_ms"] = {
        "samples": len(lags),
        "p50": percentile(lags, 50),
        "p99": percentile(lags, 99),
        "max": percentile(lags, 100),
    }
    step["stages_ms"] = stages.split(settings, ends, result)
    step["cpu_us_per_order"] = {
        name: round(seconds * 1e6 / max(1, step["answered"]), 1) for name, seconds in spent.items()
    }
    step["vm_cores"] = vm
    step["sustained"] = sustained(step)
    print(
        f"  {surface} {rate}/s -> {step['achieved_per_s']}/s p99 "
        f"{step['latency_ms']['p99']} ms sustained={step['sustained']} "
        f"(VM busy {vm['busy']} cores, steal {vm['steal']}, peak {vm['steal_peak']})",
        flush=True,
    )
    return step


async def drive(settings, ports: dict, admin: str, meter: CpuMeter) -> dict:
    xml_client, bodies = await xml_setup(ports["xml"])
    http_client, requests = await http_setup(ports["http"], admin)
    try:
        # The broker's JIT needs minutes of transactions before its cost per commit settles
        # (measured: 18 ms of CPU per transaction in the first 10 s, ~1.9 ms after 80 s; its one
        # C2 thread still busy ten minutes in: docs/performance.md).
        surfaces = (("xml", xml_client, bodies), ("http", http_client, requests))
        for _, client, payload in surfaces:
            await client.step(
                StepResult("warm-up", WARM_UP_RATE, WARM_UP_SECONDS), WARM_UP_RATE, payload
            )
        found = {}
        for surface, client, payload in surfaces:
            found[surface] = await sweep(
                functools.partial(
                    measure, surface, client=client, payload=payload, settings=settings, meter=meter
                )
            )
        return found
    finally:
        xml_client.close()
        http_client.close()


def counted(steps: list[dict]) -> list[dict]:
    """The steps that count: not discarded for steal (they stay in the results, marked)."""
    return [s for s in steps if "discarded" not in s]


def best(steps: list[dict]) -> dict | None:
    ok = [s for s in counted(steps) if s["sustained"]]
    return max(ok, key=lambda s: s["offered_per_s"]) if ok else None


def run(env) -> dict:
    settings = env.settings(partitions=4)
    logs = env.home / "logs" / "e2e"
    logs.mkdir(parents=True, exist_ok=True)
    admin = uuid.uuid4().hex
    ports = {"xml": free_port(), "http": free_port()}
    unlimited = {
        "MARKETLOG_XML_RATE": "1000000",
        "MARKETLOG_XML_BURST": "1000000",
        "MARKETLOG_HTTP_RATE": "1000000",
        "MARKETLOG_HTTP_BURST": "1000000",
    }
    procs = ServiceProcs(
        settings,
        logs,
        MARKETLOG_XML_PORT=str(ports["xml"]),
        MARKETLOG_HTTP_PORT=str(ports["http"]),
        MARKETLOG_ADMIN_KEY=admin,
        **unlimited,
    )
    procs.start(*SERVICES)
    try:
        services = {name: proc.pid for name, proc in procs.procs.items()}
        meter = CpuMeter(services, env.kafka, env.postgres)
        surfaces = asyncio.run(drive(settings, ports, admin, meter))
    finally:
        procs.stop_all()
    ceiling = (
        (env.results.get("kafka_ceiling") or {})
        .get("produce_consume", {})
        .get("median_records_per_s")
    )
    headline = {
        s: (b["offered_per_s"] if (b := best(steps)) else 0) for s, steps in surfaces.items()
    }
    figures = {
        "step_seconds": STEP_SECONDS,
        "connections": CONNECTIONS,
        "symbols": len(SYMBOLS),
        "partitions": settings.partitions,
        "rate_limits": "raised for the generator's clients",
        "max_sustained_per_s": headline,
        "vm_steal_cores": steal_over(surfaces),
        "kafka_ceiling_records_per_s": ceiling,
        "e2e_to_ceiling": {
            s: round(r / ceiling, 4) if ceiling else None for s, r in headline.items()
        },
        "steps": surfaces,
    }
    if env.stem is not None:
        figures["plot"] = plot(surfaces, env.stem.with_name(env.stem.name + "-e2e.png"))
    return figures


def steal_over(surfaces: dict) -> dict:
    """How much CPU the hypervisor took from the VM during the steps (median and worst step):
    a run with much steal measured a busy host as much as Marketlog."""
    steals = sorted(s["vm_cores"]["steal"] for steps in surfaces.values() for s in steps)
    return {"median": percentile(steals, 50), "max": steals[-1] if steals else None}


def plot(surfaces: dict, path: Path) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(surfaces), figsize=(12, 4.5), sharey=True)
    for ax, (surface, every) in zip(axes, surfaces.items(), strict=True):
        steps = counted(every)
        rates = [s["offered_per_s"] for s in steps]
        for key in ("p50", "p99", "p99.9", "max"):
            ax.plot(rates, [s["latency_ms"][key] for s in steps], marker="o", label=key)
        ax.axhline(P99_LIMIT_MS, color="grey", linestyle="--", linewidth=0.8)
        ax.set(
            title=f"{surface}: latency vs offered rate",
            xlabel="offered orders/s",
            ylabel="ms (due time -> decision)",
            yscale="log",
        )
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return path.name


def _steal_note(steal: dict | None) -> str:
    if not steal or steal["median"] is None:
        return ""
    return f" VM steal per step: median {steal['median']}, worst {steal['max']} cores."


def summary(figures: dict) -> str:
    lines = [
        f"Max sustained rate (p99 < {P99_LIMIT_MS:.0f} ms, no backlog): "
        + ", ".join(f"{s} {r}/s" for s, r in figures["max_sustained_per_s"].items())
        + f"; Kafka ceiling {figures['kafka_ceiling_records_per_s']} records/s."
        + _steal_note(figures.get("vm_steal_cores")),
        "",
        "| surface | offered/s | achieved/s | p50 ms | p99 ms | p99.9 ms | max ms | "
        "projection lag p50/p99 ms | VM busy/steal (peak) cores | sustained |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for surface, steps in figures["steps"].items():
        for s in steps:
            lat, lag = s["latency_ms"], s["projection_lag_ms"]
            vm = s.get("vm_cores") or {"busy": None, "steal": None}  # older results lack it
            lines.append(
                f"| {surface} | {s['offered_per_s']} | {s['achieved_per_s']} | "
                f"{lat['p50']} | {lat['p99']} | {lat['p99.9']} | {lat['max']} | "
                f"{lag['p50']}/{lag['p99']} | "
                f"{vm['busy']}/{vm['steal']} ({vm.get('steal_peak')}) | "
                f"{'discarded: ' + s['discarded'] if 'discarded' in s else s['sustained']} |"
            )
    lines += ["", "CPU µs per order at the highest sustained step:", ""]
    for surface, steps in figures["steps"].items():
        step = best(steps) or steps[0]
        lines.append(
            f"- {surface} @ {step['offered_per_s']}/s: "
            + ", ".join(
                f"{k} {v}"
                for k, v in sorted(step["cpu_us_per_order"].items(), key=lambda kv: -kv[1])
            )
        )
    lines += ["", "Where the time goes (ms, from the log's timestamps: bench/stages.py):", ""]
    for surface, steps in figures["steps"].items():
        failed = (s for s in counted(steps) if not s["sustained"])
        for step in (best(steps), next(failed, None)):
            if step and step.get("stages_ms"):
                lines.append(
                    f"- {surface} @ {step['offered_per_s']}/s: "
                    + stages.describe(step["stages_ms"])
                )
    if figures.get("plot"):
        lines += ["", f"![latency vs offered rate]({figures['plot']})"]
    return "\n".join(lines)
