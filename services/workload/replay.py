"""Replay a workload file over the day-trading line protocol (docs/daytrading.md).

``load`` turns the file into a plan: phases of per-user command lists separated by admin DUMPLOG
barriers. ``replay`` runs it: one asyncio task per user, all users at once, each user's lines in
file order on one connection (the server answers a connection's lines in order), a user's next
line sent once the answer to its previous one came (or up to ``window`` in flight). Every answer
is timed from its send into an HdrHistogram; the result is a :class:`Report`.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from hdrh.histogram import HdrHistogram

from services.common.workload import WorkloadError, parse_filename, parse_line

ADMIN = ""  # the routing key of admin DUMPLOG lines (barriers)
UNKNOWN_USER = "?"  # lines whose user cannot be read are replayed as one more user
READ_LIMIT = 16 * 1024 * 1024  # longest answer line accepted (a DISPLAY_SUMMARY's JSON)
CHUNK = 1024 * 1024
PERCENTILES = (50.0, 90.0, 99.0, 99.9)
_PREFIX = re.compile(r"\[\s*(\d+)\s*\][ \t]*")
_ANSWER = re.compile(rb"\[(\d+)\] (OK|ERROR),([^,]*)(?:,(.*))?")


# -- the plan ------------------------------------------------------------------------------
@dataclass
class Line:
    txn: int | None  # the number the answer must echo (None: do not check)
    data: bytes  # what is sent, LF included
    user: str  # routing key: a userid, UNKNOWN_USER, or ADMIN
    command: str  # the command word, or "?"
    problem: str | None = None  # why our parser refuses it (it is sent anyway)
    sink: Path | None = None  # where a DUMPLOG's returned bytes go (None: dropped)


@dataclass
class Phase:
    users: dict[str, list[Line]] = field(default_factory=dict)  # in order of first appearance
    barrier: Line | None = None  # an admin DUMPLOG sent alone after the phase


@dataclass
class Plan:
    phases: list[Phase]
    total: int  # lines to send, barriers included
    refused: int  # lines our parser refuses (sent for the server to refuse)
    added_dumplog: bool = False  # the generator added the final DUMPLOG (--dumplog)

    @property
    def users(self) -> list[str]:
        seen: dict[str, None] = {}
        for phase in self.phases:
            seen.update(dict.fromkeys(phase.users))
        return list(seen)


def _line(number: int, raw: str) -> Line:
    text = raw.rstrip(" \t\r\n")
    prefix = _PREFIX.match(text)
    try:
        command = parse_line(text)
    except WorkloadError as exc:
        txn = exc.txn if exc.txn is not None else (None if text.startswith("[") else number)
        body = text if txn is None or prefix else f"[{txn}] {text}"
        return Line(
            txn,
            (body + "\n").encode("ascii", "replace"),
            exc.user or UNKNOWN_USER,
            exc.command or "?",
            str(exc),
        )
    txn = command.txn if command.txn is not None else number
    body = text if prefix else f"[{txn}] {text}"
    user = ADMIN if command.admin else command.user
    return Line(txn, (body + "\n").encode("ascii"), user, command.name)


def load(text: str, dumplog: Path | None = None) -> Plan:
    """The plan for a workload file's text. With ``dumplog``, the bytes returned by the last
    admin DUMPLOG go to that path; a file without one gets ``[M+1] DUMPLOG,<name>`` at the end."""
    phases = [Phase()]
    total = refused = 0
    highest = 0
    for number, raw in enumerate(text.splitlines(), 1):
        if not raw.strip():
            continue
        line = _line(number, raw)
        total += 1
        refused += line.problem is not None
        highest = max(highest, line.txn or 0)
        if line.user == ADMIN:
            phases[-1].barrier = line
            phases.append(Phase())
        else:
            phases[-1].users.setdefault(line.user, []).append(line)
    plan = Plan(phases, total, refused)
    if dumplog is not None:
        barriers = [p.barrier for p in phases if p.barrier is not None]
        if barriers:
            barriers[-1].sink = dumplog
        else:
            name = dumplog.name
            try:
                parse_filename(name)
            except ValueError:
                name = "workload-dumplog.xml"
            txn = highest + 1
            data = f"[{txn}] DUMPLOG,{name}\n".encode()
            phases[-1].barrier = Line(txn, data, ADMIN, "DUMPLOG", sink=dumplog)
            phases.append(Phase())
            plan.total += 1
            plan.added_dumplog = True
    if not phases[-1].users and phases[-1].barrier is None and len(phases) > 1:
        phases.pop()
    return plan


# -- answers -------------------------------------------------------------------------------
@dataclass
class Answer:
    txn: int
    ok: bool
    command: str
    code: str | None  # the error code of an ERROR answer
    fields: list[str]
    payload_bytes: int = 0


class ProtocolError(Exception):
    """The server broke the line protocol (malformed answer, wrong number echoed, ...)."""


def parse_answer(raw: bytes) -> Answer:
    text = raw.rstrip(b"\r\n")
    match = _ANSWER.fullmatch(text)
    if match is None:
        raise ProtocolError(f"malformed answer {text[:120]!r}")
    txn, status, command, rest = match.groups()
    rest_text = (rest or b"").decode("ascii", "replace")
    if status == b"OK":
        return Answer(
            int(txn),
            True,
            command.decode("ascii", "replace"),
            None,
            rest_text.split(",") if rest else [],
        )
    code, _, sentence = rest_text.partition(",")
    return Answer(int(txn), False, command.decode("ascii", "replace"), code or "?", [sentence])


class Connection:
    """One TCP connection: lines go out as they are sent; answers come back in order and
    resolve the oldest waiting future. A DUMPLOG's bytes are copied to its line's sink."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.waiting: deque[tuple[Line, asyncio.Future, float]] = deque()  # + send time
        self.broken: BaseException | None = None
        self.task = asyncio.create_task(self._read())

    @classmethod
    async def open(cls, host: str, port: int) -> Connection:
        reader, writer = await asyncio.open_connection(host, port, limit=READ_LIMIT)
        return cls(reader, writer)

    def send(self, line: Line) -> asyncio.Future:
        if self.broken is not None:
            raise ConnectionError(f"connection lost: {self.broken}")
        future = asyncio.get_running_loop().create_future()
        self.waiting.append((line, future, time.perf_counter()))
        self.writer.write(line.data)
        return future

    def fail(self, error: BaseException) -> None:
        if self.broken is None:
            self.broken = error
        while self.waiting:
            _, future, _ = self.waiting.popleft()
            if not future.done():
                future.set_exception(ConnectionError(str(error)))
                future.exception()  # retrieved: a user task may be gone already
        self.writer.close()

    async def _read(self) -> None:
        try:
            while True:
                raw = await self.reader.readline()
                if not raw.endswith(b"\n"):
                    raise ConnectionError("the server closed the connection")
                answer = parse_answer(raw)
                if not self.waiting:
                    raise ProtocolError(f"an answer to nothing: {raw[:120]!r}")
                line, future, _ = self.waiting[0]  # stays waiting (failed by fail()) until done
                if line.txn is not None and answer.txn != line.txn:
                    raise ProtocolError(f"answer for [{answer.txn}] to [{line.txn}]")
                if answer.ok and answer.command == "DUMPLOG":
                    await self._payload(answer, line.sink)
                self.waiting.popleft()
                if not future.done():
                    future.set_result(answer)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # any failure ends this connection
            self.fail(exc)

    async def _payload(self, answer: Answer, sink: Path | None) -> None:
        if len(answer.fields) != 2 or not answer.fields[1].isdigit():
            raise ProtocolError(f"DUMPLOG answer without a byte length: {answer.fields}")
        left = int(answer.fields[1])
        answer.payload_bytes = left
        with open(sink, "wb") if sink is not None else contextlib.nullcontext() as out:
            while left:
                chunk = await self.reader.read(min(left, CHUNK))
                if not chunk:
                    raise ConnectionError(f"connection closed with {left} DUMPLOG bytes to come")
                left -= len(chunk)
                if out is not None:
                    out.write(chunk)

    def overdue(self, now: float, timeout: float) -> None:
        """Fail the connection if its oldest line has waited more than ``timeout`` s."""
        if self.waiting and self.broken is None and now - self.waiting[0][2] > timeout:
            line = self.waiting[0][0]
            self.fail(
                TimeoutError(f"no answer to [{line.txn}] {line.command} within {timeout:g} s")
            )

    async def close(self) -> None:
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self.task
        self.writer.close()
        with contextlib.suppress(Exception):
            await self.writer.wait_closed()


# -- the report ----------------------------------------------------------------------------
@dataclass
class Report:
    file: str
    commands: int
    users: int
    connections: int
    refused_by_parser: int = 0
    added_dumplog: bool = False
    answered: int = 0
    ok: int = 0
    errors: Counter = field(default_factory=Counter)  # error code -> answers
    failures: list[str] = field(default_factory=list)  # connections lost, protocol errors
    seconds: float = 0.0
    latency: HdrHistogram = field(default_factory=lambda: HdrHistogram(1, 3_600_000_000, 3))
    dumplog_path: str | None = None
    dumplog_bytes: int | None = None

    @property
    def unanswered(self) -> int:
        return self.commands - self.answered

    @property
    def complete(self) -> bool:
        """Every command got a well-formed answer (errors count), and a wanted DUMPLOG came."""
        dump_ok = self.dumplog_path is None or self.dumplog_bytes is not None
        return self.unanswered == 0 and not self.failures and dump_ok

    @property
    def rate(self) -> float:
        return self.answered / self.seconds if self.seconds > 0 else 0.0

    def percentiles_us(self) -> dict[str, int]:
        if not self.answered:
            return {}
        out = {f"p{p:g}": self.latency.get_value_at_percentile(p) for p in PERCENTILES}
        out["max"] = self.latency.get_max_value()
        return out

    def as_dict(self) -> dict:
        return {
            "file": self.file,
            "commands": self.commands,
            "users": self.users,
            "connections": self.connections,
            "refused_by_parser": self.refused_by_parser,
            "added_dumplog": self.added_dumplog,
            "answered": self.answered,
            "ok": self.ok,
            "errors": dict(sorted(self.errors.items())),
            "unanswered": self.unanswered,
            "failures": self.failures,
            "seconds": round(self.seconds, 6),
            "commands_per_second": round(self.rate, 1),
            "latency_us": self.percentiles_us(),
            "dumplog": {"path": self.dumplog_path, "bytes": self.dumplog_bytes},
            "complete": self.complete,
        }

    def text(self) -> str:
        lines = [
            f"{self.file}: {self.commands} commands, {self.users} users, "
            f"{self.connections} connections"
            + (" (+1 DUMPLOG added by --dumplog)" if self.added_dumplog else ""),
            f"answered {self.answered} in {self.seconds:.3f} s: {self.rate:,.0f} commands/s",
            f"  ok {self.ok}, errors {sum(self.errors.values())}"
            + (
                " (" + ", ".join(f"{k} {v}" for k, v in sorted(self.errors.items())) + ")"
                if self.errors
                else ""
            ),
        ]
        if self.refused_by_parser:
            lines.append(f"  {self.refused_by_parser} lines refused by our parser (sent anyway)")
        pct = self.percentiles_us()
        if pct:
            lines.append("latency ms: " + "  ".join(f"{k} {v / 1000:.2f}" for k, v in pct.items()))
        if self.dumplog_path is not None:
            got = "not received" if self.dumplog_bytes is None else f"{self.dumplog_bytes} bytes"
            lines.append(f"dumplog: {got} -> {self.dumplog_path}")
        if self.unanswered:
            lines.append(f"UNANSWERED: {self.unanswered}")
        lines += [f"FAILED: {f}" for f in self.failures[:20]]
        if len(self.failures) > 20:
            lines.append(f"... and {len(self.failures) - 20} more failures")
        return "\n".join(lines)


# -- running -------------------------------------------------------------------------------
class Runner:
    def __init__(self, report: Report, window: int) -> None:
        self.report, self.window = report, max(1, window)

    def _answered(self, line: Line, answer: Answer, sent: float) -> None:
        report = self.report
        report.latency.record_value(max(1, int((time.perf_counter() - sent) * 1e6)))
        report.answered += 1
        if answer.ok:
            report.ok += 1
            if line.sink is not None:
                report.dumplog_bytes = answer.payload_bytes
        else:
            report.errors[answer.code] += 1

    async def _await(self, line: Line, future: asyncio.Future, sent: float) -> None:
        # no wait_for per command (a task each): a watchdog fails connections that stall
        self._answered(line, await future, sent)

    async def user(self, conn: Connection, lines: list[Line]) -> None:
        flight: deque[tuple[Line, asyncio.Future, float]] = deque()
        try:
            for line in lines:
                if len(flight) >= self.window:
                    await self._await(*flight.popleft())
                flight.append((line, conn.send(line), time.perf_counter()))
            while flight:
                await self._await(*flight.popleft())
        except ConnectionError as exc:
            who = f"user {lines[0].user}" if lines[0].user != ADMIN else "admin DUMPLOG"
            self.report.failures.append(f"{who}: {exc}")


async def _connect(host: str, port: int, count: int) -> list[Connection]:
    gate = asyncio.Semaphore(64)  # do not flood the server's accept backlog

    async def one() -> Connection:
        async with gate:
            return await Connection.open(host, port)

    results = await asyncio.gather(*(one() for _ in range(count)), return_exceptions=True)
    failed = [r for r in results if isinstance(r, BaseException)]
    conns = [r for r in results if isinstance(r, Connection)]
    if failed:
        for conn in conns:
            await conn.close()
        raise ConnectionError(f"cannot connect to {host}:{port}: {failed[0]}")
    return conns


async def replay(
    plan: Plan,
    host: str,
    port: int,
    *,
    name: str = "workload",
    connections: int = 0,
    window: int = 1,
    timeout: float = 120.0,
    progress: Callable[[int], None] | None = None,
) -> Report:
    """Run the plan; ``connections`` 0 = one per user. ``progress`` is called about ten times
    a second with the number of answers so far."""
    users = plan.users
    count = min(connections, len(users)) if connections > 0 else len(users)
    report = Report(name, plan.total, len(users), count, plan.refused, plan.added_dumplog)
    for phase in plan.phases:
        if phase.barrier is not None and phase.barrier.sink is not None:
            report.dumplog_path = str(phase.barrier.sink)
    has_barrier = any(p.barrier for p in plan.phases)
    try:
        conns = await _connect(host, port, count + (1 if has_barrier else 0))
    except ConnectionError as exc:
        report.failures.append(str(exc))
        return report
    admin = conns.pop() if has_barrier else None
    assigned = {user: conns[i % count] for i, user in enumerate(users)} if count else {}
    runner = Runner(report, window)
    ticker = None
    if progress is not None:

        async def tick() -> None:
            while True:
                progress(report.answered)
                await asyncio.sleep(0.1)

        ticker = asyncio.create_task(tick())
    every = [*conns, *([admin] if admin else [])]

    async def watchdog() -> None:
        while True:
            await asyncio.sleep(min(timeout / 4, 0.5))
            now = time.perf_counter()
            for conn in every:
                conn.overdue(now, timeout)

    watching = asyncio.create_task(watchdog())
    start = time.perf_counter()
    try:
        for phase in plan.phases:
            await asyncio.gather(
                *(runner.user(assigned[user], lines) for user, lines in phase.users.items())
            )
            if phase.barrier is not None:
                await runner.user(admin, [phase.barrier])
        report.seconds = time.perf_counter() - start
    finally:
        watching.cancel()
        if ticker is not None:
            ticker.cancel()
            progress(report.answered)
        for conn in every:
            await conn.close()
    return report
