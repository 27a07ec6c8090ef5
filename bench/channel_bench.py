"""End to end: orders through the private JSON-lines channel (port 7001, docs/channels.md).

The whole system (the split topology: ledger and matcher, 4 partitions) runs as processes against
the bench broker and database. CONNECTIONS private
connections (16), each its own fresh account, trade closed-loop: each sends a createOrder and
its next one once the previous one's first executionReport (NEW) came back (WINDOW orders in
flight per connection). Even connections buy, odd ones sell, all at one price and quantity 1, so
about every other order crosses a resting one of another account (a FILL on both connections).
Each connection first places WARM_UP orders (opening its account, warming the path), unmeasured;
then every connection trades for the measured time. Reported: orders/s answered, latency from
send to the order's NEW (HdrHistogram, µs) p50/p99/p99.9/max, fills, errors, the CPU each
process spent per order and the VM's busy and stolen cores over the measured time (bench/cpu.py),
and beside it the XML figure of the same run (e2e_bench), when that suite ran before.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from dataclasses import dataclass, field

from hdrh.histogram import HdrHistogram

from bench.cpu import CpuMeter, metered
from infra.stack import EVERY_SERVICE, ServiceProcs, gateway_ports, topology_services

TOPOLOGY, PARTITIONS = "split", 4  # what `make up` runs (infra/stack.py PROCESSORS)
CONNECTIONS, WINDOW = 16, 1
SECONDS, QUICK_SECONDS = 20.0, 3.0
WARM_UP, QUICK_WARM_UP = 20, 5  # unmeasured orders per connection first
PRICE, QUANTITY = 100, 1
ANSWER_TIMEOUT = 30.0
CHANNEL = {  # the driver's few connections may send what they like, with money to spare
    "MARKETLOG_CHANNEL_RATE": "1000000",
    "MARKETLOG_CHANNEL_BURST": "1000000",
    "MARKETLOG_CHANNEL_CASH": "1000000000",
    "MARKETLOG_CHANNEL_SHARES": "1000000",
}


@dataclass
class Tally:
    sent: int = 0
    answered: int = 0  # NEW reports of measured orders
    errors: int = 0
    timeouts: int = 0
    fills: int = 0  # FILL reports: both sides of a trade get one
    latency: HdrHistogram = field(default_factory=lambda: HdrHistogram(1, 120_000_000, 3))

    def summary(self, seconds: float) -> dict:
        def ms(p: float) -> float:
            return round(self.latency.get_value_at_percentile(p) / 1000, 2)

        return {
            "sent": self.sent,
            "answered": self.answered,
            "errors": self.errors,
            "timeouts": self.timeouts,
            "fills": self.fills,
            "seconds": round(seconds, 3),
            "orders_per_s": round(self.answered / seconds, 1) if seconds else 0.0,
            "latency_ms": {
                "p50": ms(50),
                "p99": ms(99),
                "p99.9": ms(99.9),
                "max": round(self.latency.get_max_value() / 1000, 2),
            },
        }


class Trader:
    """One private connection: createOrder closed-loop, NEW times the order."""

    def __init__(self, index: int, reader, writer) -> None:
        self.side = "BUY" if index % 2 == 0 else "SELL"
        self.reader, self.writer = reader, writer
        self.next_id = 0
        self.waiting: dict[int, tuple[float, asyncio.Future, Tally | None]] = {}
        self.fills = 0
        self.listener = asyncio.ensure_future(self._read())

    async def _read(self) -> None:
        while line := await self.reader.readline():
            now = time.perf_counter()
            m = json.loads(line)
            kind = m.get("report") or m.get("message")
            if kind == "FILL":
                self.fills += 1
                continue
            if kind not in ("NEW", "error"):
                continue  # CANCELED (none expected), heartbeats
            found = self.waiting.pop(m.get("orderId"), None)
            if found is None:
                continue
            sent_at, done, tally = found
            if tally is not None:
                if kind == "NEW":
                    tally.answered += 1
                    tally.latency.record_value(max(1, int((now - sent_at) * 1e6)))
                else:
                    tally.errors += 1
            if not done.done():
                done.set_result(kind)

    def place(self, tally: Tally | None) -> asyncio.Future:
        self.next_id += 1
        oid = self.next_id
        line = (
            f'{{"message":"createOrder","orderId":{oid},"side":"{self.side}",'
            f'"price":{PRICE},"quantity":{QUANTITY}}}\n'
        )
        done = asyncio.get_running_loop().create_future()
        self.waiting[oid] = (time.perf_counter(), done, tally)
        self.writer.write(line.encode())
        if tally is not None:
            tally.sent += 1
        return done

    async def trade(self, count: int | None, until: float | None, tally: Tally | None) -> None:
        """``count`` orders, or until ``until`` (perf_counter), WINDOW in flight."""
        slots = asyncio.Semaphore(WINDOW)
        pending: set[asyncio.Task] = set()
        placed = 0
        while (count is None or placed < count) and (until is None or time.perf_counter() < until):
            await slots.acquire()
            placed += 1
            task = asyncio.ensure_future(self._one(tally, slots))
            pending.add(task)
            task.add_done_callback(pending.discard)
        if pending:
            await asyncio.gather(*pending)

    async def _one(self, tally: Tally | None, slots: asyncio.Semaphore) -> None:
        try:
            async with asyncio.timeout(ANSWER_TIMEOUT):
                await self.place(tally)
        except TimeoutError:
            if tally is not None:
                tally.timeouts += 1
        finally:
            slots.release()

    async def close(self) -> None:
        self.listener.cancel()
        self.writer.close()
        with contextlib.suppress(ConnectionError, OSError, asyncio.CancelledError):
            await self.writer.wait_closed()


async def drive(port: int, meter: CpuMeter, seconds: float, warm_up: int) -> tuple:
    traders = []
    for i in range(CONNECTIONS):
        reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=1 << 20)
        traders.append(Trader(i, reader, writer))
    try:
        warm = Tally()
        await asyncio.gather(*(t.trade(warm_up, None, warm) for t in traders))
        if warm.errors or warm.timeouts:
            raise RuntimeError(f"the warm-up was refused: {warm.summary(1)}")
        fills_before = sum(t.fills for t in traders)
        tally = Tally()
        began = time.perf_counter()
        until = began + seconds

        async def measured() -> None:
            await asyncio.gather(*(t.trade(None, until, tally) for t in traders))

        cpu = await metered(meter, measured())
        elapsed = time.perf_counter() - began
        tally.fills = sum(t.fills for t in traders) - fills_before
        return tally, elapsed, cpu
    finally:
        for t in traders:
            await t.close()


def run(env) -> dict:
    seconds = QUICK_SECONDS if env.quick else SECONDS
    warm_up = QUICK_WARM_UP if env.quick else WARM_UP
    settings = env.settings(partitions=PARTITIONS)
    logs = env.home / "logs" / "channel"
    logs.mkdir(parents=True, exist_ok=True)
    ports, port_env = gateway_ports()
    procs = ServiceProcs(
        settings,
        logs,
        MARKETLOG_TOPOLOGY=TOPOLOGY,
        MARKETLOG_ADMIN_KEY=uuid.uuid4().hex,
        MARKETLOG_DUMP_DIR=str(env.home / "dumps"),
        **port_env,
        **CHANNEL,
    )
    procs.start(*topology_services(EVERY_SERVICE, TOPOLOGY))
    try:
        pids = {n: proc.pid for n, proc in procs.procs.items()}
        meter = CpuMeter.for_stack(pids, env.kafka, env.postgres)
        tally, elapsed, cpu = asyncio.run(drive(ports["private"], meter, seconds, warm_up))
    finally:
        procs.stop_all()
    found = {
        "topology": TOPOLOGY,
        "partitions": PARTITIONS,
        "connections": CONNECTIONS,
        "window": WINDOW,
        "warm_up_orders_per_connection": warm_up,
        "order": f"limit GTC, {QUANTITY} share at {PRICE}; even connections buy, odd sell",
        **tally.summary(elapsed),
    }
    answered = max(1, tally.answered)
    per_order = {k: round(v * 1e6 / answered, 1) for k, v in cpu.spent.items()}
    found["cpu_us_per_order"] = per_order
    found["cpu_us_per_order_total"] = round(sum(per_order.values()), 1)
    found["vm_cores"] = cpu.vm
    found["xml_surface_same_run"], found["xml_orders_per_s_same_run"] = xml_same_run(
        env.results.get("e2e_bench")
    )
    found["headline"] = {
        "orders_per_s": found["orders_per_s"],
        "p99_ms": found["latency_ms"]["p99"],
        "cpu_us_per_order": found["cpu_us_per_order_total"],
        "surface": "private channel",
    }
    return found


def xml_same_run(e2e: dict | None) -> tuple[str | None, int | None]:
    """The XML rate e2e_bench sustained in this run: of this suite's topology if it swept it
    (its surfaces are named ``xml (engine)``, ``xml (split)``; one it only measured at the
    reference rate shows 0), else the best XML surface it swept; (None, None) if it did not run."""
    rates = (e2e or {}).get("max_sustained_per_s", {})
    swept = {s: r for s, r in rates.items() if s.split(" ")[0] == "xml" and r}
    same = f"xml ({TOPOLOGY})"
    if same in swept:
        return same, swept[same]
    if swept:
        best = max(swept, key=swept.__getitem__)
        return best, swept[best]
    return None, None


def summary(f: dict) -> str:
    lat = ", ".join(f"{k} {v}" for k, v in f["latency_ms"].items())
    cpu = ", ".join(
        f"{k} {v}" for k, v in sorted(f["cpu_us_per_order"].items(), key=lambda kv: -kv[1])
    )
    xml, surface = f["xml_orders_per_s_same_run"], f.get("xml_surface_same_run")
    vm = f["vm_cores"]
    return "\n".join(
        [
            f"{f['topology']} topology, {f['partitions']} partitions; "
            f"{f['connections']} private connections, closed loop ({f['window']} order in flight "
            f"each), {f['order']}; {f['warm_up_orders_per_connection']} warm-up orders each",
            "",
            f"**{f['orders_per_s']:,} orders/s** over {f['seconds']} s: {f['answered']} of "
            f"{f['sent']} answered NEW, {f['fills']} FILL reports (one per side of a trade), "
            f"errors {f['errors']}, timeouts "
            f"{f['timeouts']}; createOrder → NEW latency ms {lat}",
            "",
            f"CPU µs per order: {cpu} (total {f['cpu_us_per_order_total']}); VM busy/steal (peak) "
            f"{vm['busy']}/{vm['steal']} ({vm['steal_peak']}) cores",
            "",
            "XML orders/s sustained in the same run (e2e_bench): "
            + (f"{xml} ({surface})" if xml is not None else "not run or nothing sustained"),
        ]
    )
