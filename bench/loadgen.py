"""An open-loop load generator for the XML/TCP, HTTP and private-channel gateways (asyncio).

Requests are sent at a fixed offered rate whether or not answers come back: request i is due at
``start + i / rate`` and its latency is measured from that due time, not from when a connection
became free. A slow system therefore shows up as latency and backlog, never as a quietly lower
send rate (no coordinated omission).

XML requests are pipelined on each connection (the gateway answers a connection's requests in
order); HTTP/1.1 keeps one request in flight per connection, so due requests wait in a queue —
and that wait counts. Private-channel orders are pipelined too, answered by orderId.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from hdrh.histogram import HdrHistogram

ORDER_ID = re.compile(rb'id="(\d+)"')
HTTP_ORDER_ID = re.compile(rb'"order_id":\s*"?(\d+)')


@dataclass
class StepResult:
    surface: str
    offered: float
    seconds: float
    sent: int = 0
    answered: int = 0
    errors: int = 0
    latency: HdrHistogram = field(default_factory=lambda: HdrHistogram(1, 120_000_000, 3))
    early: HdrHistogram = field(default_factory=lambda: HdrHistogram(1, 120_000_000, 3))
    late: HdrHistogram = field(default_factory=lambda: HdrHistogram(1, 120_000_000, 3))
    answered_in_time: int = 0
    # every answered order: (order id, due, answer time): the per-stage split and projection lag
    answers: list[tuple[int, float, float]] = field(default_factory=list)
    start: float = 0.0
    wall_start: float = 0.0  # time.time() at `start`: perf_counter times -> the log's clock

    def record(self, due: float, now: float, ok: bool, order_id: int | None) -> None:
        micros = max(1, int((now - due) * 1e6))
        self.latency.record_value(micros)
        elapsed = due - self.start
        if elapsed < self.seconds / 3:
            self.early.record_value(micros)
        elif elapsed >= 2 * self.seconds / 3:
            self.late.record_value(micros)
        self.answered += 1
        if now - self.start <= self.seconds + 0.5:
            self.answered_in_time += 1
        if not ok:
            self.errors += 1
        elif order_id is not None:
            self.answers.append((order_id, due, now))

    def summary(self) -> dict:
        def ms(hist: HdrHistogram, p: float) -> float:
            return round(hist.get_value_at_percentile(p) / 1000, 2)

        return {
            "surface": self.surface,
            "offered_per_s": self.offered,
            "seconds": self.seconds,
            "sent": self.sent,
            "answered": self.answered,
            "errors": self.errors,
            "achieved_per_s": round(self.answered_in_time / self.seconds, 1),
            "latency_ms": {
                "p50": ms(self.latency, 50),
                "p99": ms(self.latency, 99),
                "p99.9": ms(self.latency, 99.9),
                "max": round(self.latency.get_max_value() / 1000, 2),
            },
            "p99_first_third_ms": ms(self.early, 99),
            "p99_last_third_ms": ms(self.late, 99),
        }


async def _pace(
    rate: float, seconds: float, result: StepResult, send: Callable[[int, float], None]
):
    """Call send(i, due) for every request due, on time, for `seconds`."""
    result.start = start = time.perf_counter()
    result.wall_start = time.time()
    total, i = int(rate * seconds), 0
    while i < total:
        now = time.perf_counter()
        due_count = min(total, int((now - start) * rate) + 1)
        while i < due_count:
            send(i, start + i / rate)
            i += 1
        result.sent = i
        await asyncio.sleep(max(0.0, start + i / rate - time.perf_counter()))


async def _drain(result: StepResult, readers: list, timeout: float = 30.0) -> None:
    """Wait for every answer (at most `timeout`), then stop the readers."""
    deadline = time.perf_counter() + timeout
    while result.answered < result.sent and time.perf_counter() < deadline:
        await asyncio.sleep(0.05)
    for task in readers:
        task.cancel()
    await asyncio.gather(*readers, return_exceptions=True)


class XmlClient:
    """Pipelined XML connections; replies come back in order per connection."""

    def __init__(self, host: str, port: int, connections: int) -> None:
        self.host, self.port, self.count = host, port, connections
        self.conns: list[tuple[asyncio.StreamReader, asyncio.StreamWriter, deque]] = []

    async def open(self) -> None:
        for _ in range(self.count):
            reader, writer = await asyncio.open_connection(self.host, self.port)
            self.conns.append((reader, writer, deque()))

    async def request(self, body: bytes) -> bytes:
        reader, writer, _ = self.conns[0]
        writer.write(b"%d\n%s" % (len(body), body))
        return await reader.readuntil(b"</results>")

    async def step(self, result: StepResult, rate: float, bodies: list[list[bytes]]) -> None:
        readers = [asyncio.create_task(self._read(c, result)) for c in self.conns]

        def send(i: int, due: float) -> None:
            n = i % self.count
            _, writer, pending = self.conns[n]
            body = bodies[n][i // self.count % len(bodies[n])]
            pending.append(due)
            writer.write(b"%d\n%s" % (len(body), body))

        await _pace(rate, result.seconds, result, send)
        await _drain(result, readers)

    async def _read(self, conn, result: StepResult) -> None:
        reader, _, pending = conn
        while True:
            reply = await reader.readuntil(b"</results>")
            now = time.perf_counter()
            ok = b"<opened" in reply
            found = ORDER_ID.search(reply) if ok else None
            result.record(pending.popleft(), now, ok, int(found.group(1)) if found else None)

    def close(self) -> None:
        for _, writer, _ in self.conns:
            writer.close()


class HttpClient:
    """Keep-alive HTTP/1.1 connections, one request in flight each, fed from a due-time queue."""

    def __init__(self, host: str, port: int, connections: int) -> None:
        self.host, self.port, self.count = host, port, connections
        self.conns: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []

    async def open(self) -> None:
        for _ in range(self.count):
            self.conns.append(await asyncio.open_connection(self.host, self.port))

    @staticmethod
    def encode(method: str, path: str, key: str, payload: dict | None) -> bytes:
        body = json.dumps(payload).encode() if payload is not None else b""
        return (
            f"{method} {path} HTTP/1.1\r\nHost: bench\r\nAuthorization: Bearer {key}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        ).encode() + body

    @staticmethod
    async def read(reader: asyncio.StreamReader) -> tuple[int, bytes]:
        head = await reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        length = int(re.search(rb"(?i)content-length:\s*(\d+)", head).group(1))
        return status, await reader.readexactly(length)

    async def call(self, request: bytes) -> tuple[int, bytes]:
        reader, writer = self.conns[0]
        writer.write(request)
        return await self.read(reader)

    async def step(self, result: StepResult, rate: float, requests: list[bytes]) -> None:
        queue: asyncio.Queue = asyncio.Queue()
        workers = [asyncio.create_task(self._work(n, queue, result)) for n in range(self.count)]

        def send(i: int, due: float) -> None:
            queue.put_nowait((due, requests[i % len(requests)]))

        await _pace(rate, result.seconds, result, send)
        await _drain(result, workers)

    async def _work(self, n: int, queue: asyncio.Queue, result: StepResult) -> None:
        while True:
            due, request = await queue.get()
            try:
                status, body = await self._send(n, request)
            except (ConnectionError, asyncio.IncompleteReadError):
                result.record(due, time.perf_counter(), False, None)
                continue
            ok = status in (200, 201)
            found = HTTP_ORDER_ID.search(body) if ok else None
            result.record(due, time.perf_counter(), ok, int(found.group(1)) if found else None)

    async def _send(self, n: int, request: bytes) -> tuple[int, bytes]:
        """Send on connection n; once more on a fresh one if the server closed it while idle
        (uvicorn drops idle keep-alive connections after 5 s: the request never reached it)."""
        for attempt in (1, 2):
            reader, writer = self.conns[n]
            try:
                writer.write(request)
                return await self.read(reader)
            except (ConnectionError, asyncio.IncompleteReadError):
                self.conns[n] = await asyncio.open_connection(self.host, self.port)
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def close(self) -> None:
        for _, writer in self.conns:
            writer.close()


class ChannelClient:
    """Private JSON-line connections (docs/channels.md), each logged in to its own account:
    createOrder lines pipelined, each order timed to its first report, NEW or ``error``, found by
    its orderId. OrderIds grow per connection across steps (an account refuses a reused one)."""

    def __init__(self, host: str, port: int, keys: list[str]) -> None:
        self.host, self.port, self.keys = host, port, keys
        self.count = len(keys)
        # per connection: reader, writer, orderId -> due time, the last orderId sent
        self.conns: list[tuple[asyncio.StreamReader, asyncio.StreamWriter, dict[int, float]]] = []
        self.next_ids: list[int] = []

    async def open(self) -> None:
        for key in self.keys:
            reader, writer = await asyncio.open_connection(self.host, self.port, limit=1 << 20)
            writer.write(json.dumps({"message": "login", "apiKey": key}).encode() + b"\n")
            while True:  # the subscription's snapshot and heartbeats may come first
                answer = json.loads(await reader.readline())
                if answer.get("message") == "login":
                    break
                if answer.get("message") == "error":
                    raise RuntimeError(f"login refused: {answer}")
            self.conns.append((reader, writer, {}))
            self.next_ids.append(0)

    async def step(self, result: StepResult, rate: float, orders: list[list[bytes]]) -> None:
        """``orders``: per connection, createOrder lines with ``{oid}`` where the orderId goes."""
        readers = [asyncio.create_task(self._read(c, result)) for c in self.conns]

        def send(i: int, due: float) -> None:
            n = i % self.count
            _, writer, pending = self.conns[n]
            self.next_ids[n] += 1
            oid = self.next_ids[n]
            pending[oid] = due
            writer.write(orders[n][i // self.count % len(orders[n])].replace(b"{oid}", b"%d" % oid))

        await _pace(rate, result.seconds, result, send)
        await _drain(result, readers)

    @staticmethod
    async def _read(conn, result: StepResult) -> None:
        reader, _, pending = conn
        while line := await reader.readline():
            if b'"NEW"' not in line and b'"error"' not in line:
                continue  # FILL reports, heartbeats, the book
            now = time.perf_counter()
            answer = json.loads(line)
            due = pending.pop(answer.get("orderId"), None)
            if due is not None:  # no exchange order id on the wire: no stage split, no lag
                result.record(due, now, answer.get("report") == "NEW", None)

    def close(self) -> None:
        for _, writer, _ in self.conns:
            writer.close()
