"""The day-trading line protocol server (docs/daytrading.md, *Line protocol*), port 12346.

One asyncio task per connection reads lines and, in line order, checks each (the workload parser,
``services/common/workload.py``), takes the quote it needs, and appends it through the desk; a
second task answers them in the same order, each from its command's DayTradeDecided. So a
connection's commands are appended, decided (one user's on one partition) and answered in line
order while later lines are already on their way (pipelining). A line refused here (bad input,
no quote) gets its error answer in its place and nothing is appended.

Limits: a line is at most 1,024 bytes; at most ``daytrade_max_inflight`` lines of a connection
are read but not yet answered (then the server stops reading it until answers are sent); a
connection idle that long (nothing to read, nothing to answer) is closed; past
``daytrade_max_connections`` a new connection gets one error line and is closed. A client that
does not read its answers stops only its own connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any, BinaryIO

from services.common.config import Settings
from services.common.workload import Command, WorkloadError, parse_line

from ..bus import AppendError, DecisionTimeout, Event
from ..commands import DAYTRADE_DECIDED, QUOTED_COMMANDS, DayTradeSpec
from ..config import GatewaySettings
from ..desk import Desk
from ..projection import ProjectionTimeout
from ..quotes import QuoteUnavailable
from ..sessions import Session
from . import daytrade_lines as lines

log = logging.getLogger(__name__)

CHUNK = 1 << 20  # bytes of a DUMPLOG file read and sent at once
BAD_INPUT = "bad_input"
QUOTE_UNAVAILABLE = "quote_unavailable"
TIMEOUT = "timeout"  # no decision (or projection) in time: the command may still be decided
UNAVAILABLE = "unavailable"  # the log did not take the command, or the file could not be written


class DayTradeServer:
    def __init__(self, desk: Desk, settings: Settings, gateway: GatewaySettings) -> None:
        self.desk = desk
        self.host, self.port = settings.daytrade_host, settings.daytrade_port
        self.gateway = gateway
        self.connections = 0
        self.server: asyncio.Server | None = None
        self._open: set[Connection] = set()
        self._idle = asyncio.Event()

    async def start(self) -> asyncio.Server:
        self.server = await asyncio.start_server(
            self._serve,
            self.host,
            self.port,
            backlog=4096,
            limit=1 << 16,
            reuse_port=self.gateway.reuse_port or None,
        )
        return self.server

    async def stop(self) -> None:
        """Stop listening, hang up on every client and wait (5 s at most) for their tasks."""
        if self.server is not None:
            self.server.close()
        for connection in list(self._open):
            connection.hang_up()
        if self.connections:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(5):
                    await self._idle.wait()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.connections >= self.gateway.daytrade_max_connections:
            writer.write(lines.error(0, None, UNAVAILABLE, "too many connections; try again later"))
            await _close(writer)
            return
        self.connections += 1
        connection = Connection(self.desk, self.gateway, reader, writer)
        self._open.add(connection)
        self._idle.clear()
        try:
            await connection.run()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        except Exception:
            log.exception("day-trading connection failed")
        finally:
            self._open.discard(connection)
            await _close(writer)
            self.connections -= 1
            if not self.connections:
                self._idle.set()


# what the answering task gets for one line: the answer itself, or what will make it
Answer = bytes | tuple[bytes, BinaryIO, int]  # a DUMPLOG: its line, then the file's bytes
_END = object()


@dataclass(frozen=True, slots=True)
class Later:
    """An appended command's answer, made once its decision comes (awaited in line order)."""

    make: Callable[..., Coroutine[Any, Any, Answer]]
    spec: DayTradeSpec
    decided: Awaitable[Event]
    session: Session

    def __await__(self):
        return self.make(self.spec, self.decided, self.session).__await__()

    def drop(self) -> None:
        """Never awaited (the client left): let its decision go unheard, quietly."""
        if asyncio.iscoroutine(self.decided):
            self.decided.close()


Pending = bytes | Later


class Connection:
    def __init__(
        self,
        desk: Desk,
        gateway: GatewaySettings,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> None:
        self.desk, self.reader, self.writer = desk, reader, writer
        self.idle_timeout = gateway.daytrade_idle_timeout
        self.frames = lines.LineReader()
        self.session = Session()
        self.answers: asyncio.Queue[Any] = asyncio.Queue(max(1, gateway.daytrade_max_inflight))
        self.unanswered = 0  # lines read and not yet answered
        self.answering: asyncio.Task | None = None

    def hang_up(self) -> None:
        self.writer.transport.abort()
        if self.answering is not None:
            self.answering.cancel()

    async def run(self) -> None:
        self.answering = answering = asyncio.create_task(self._answer())
        try:
            await self._read(answering)
        finally:
            # the client only ended its side: answer what it sent; hung up or stopping: stop
            if not answering.done() and not self.writer.transport.is_closing():
                await self._put(_END, answering)
                await asyncio.wait([answering], timeout=self.idle_timeout)
            if not answering.done():
                answering.cancel()
            try:
                await answering
            except (asyncio.CancelledError, ConnectionError, TimeoutError):
                pass  # hung up, stopped, or not reading its answers
            except Exception:
                log.exception("day-trading answers failed")
            self._drop_unsent()

    async def _read(self, answering: asyncio.Task) -> None:
        while not answering.done():
            try:
                async with asyncio.timeout(self.idle_timeout):
                    data = await self.reader.read(65536)
            except TimeoutError:
                if self.unanswered:  # waiting for answers is not idling
                    continue
                return
            if not data:
                if self.frames.buffer:  # a last line without its LF
                    await self._line(bytes(self.frames.buffer).removesuffix(b"\r"), answering)
                return
            for line in self.frames.feed(data):
                await self._line(line, answering)

    async def _line(self, line: bytes | None, answering: asyncio.Task) -> None:
        self.unanswered += 1
        await self._put(await self._submit(line), answering)

    async def _put(self, item: Any, answering: asyncio.Task) -> None:
        """Queue an answer; waits while the connection has too many lines in flight."""
        with contextlib.suppress(asyncio.QueueFull):
            self.answers.put_nowait(item)
            return
        put = asyncio.ensure_future(self.answers.put(item))
        done, _ = await asyncio.wait([put, answering], return_when=asyncio.FIRST_COMPLETED)
        if put not in done:  # the answering side is gone (client hung up)
            put.cancel()
            if isinstance(item, Later):
                item.drop()

    async def _submit(self, raw: bytes | None) -> Pending:
        """Check one line, take its quote, append it: its answer, or what will make it."""
        if raw is lines.TOO_LONG:
            return lines.error(0, None, BAD_INPUT, f"line longer than {self.frames.max_len} bytes")
        try:
            command = parse_line(raw.decode("latin-1"))
        except WorkloadError as exc:
            return lines.error(exc.txn, exc.command, BAD_INPUT, str(exc))
        return await submit(self.desk, command, self.session)

    async def _answer(self) -> None:
        while True:
            item = await self.answers.get()
            if item is _END:
                return
            answer = item if isinstance(item, bytes) else await item
            if isinstance(answer, tuple):
                await self._send_file(*answer)
            else:
                self.writer.write(answer)
            self.unanswered -= 1
            if self.answers.empty() or self.writer.transport.get_write_buffer_size() > CHUNK:
                async with asyncio.timeout(self.idle_timeout):
                    await self.writer.drain()

    async def _send_file(self, head: bytes, file: BinaryIO, length: int) -> None:
        self.writer.write(head)
        with file:
            left = length
            while left:
                chunk = await asyncio.to_thread(file.read, min(left, CHUNK))
                if not chunk:  # the file changed under us: the stream cannot be resynchronised
                    raise ConnectionError(f"{file.name} is shorter than announced ({length})")
                left -= len(chunk)
                self.writer.write(chunk)
                async with asyncio.timeout(self.idle_timeout):
                    await self.writer.drain()

    def _drop_unsent(self) -> None:
        while not self.answers.empty():
            item = self.answers.get_nowait()
            if isinstance(item, Later):
                item.drop()


async def submit(desk: Desk, command: Command, session: Session) -> Pending:
    """Append one valid command (after its checks and quote) and return what makes its answer;
    the error answer itself if it is refused here (then nothing is appended)."""
    name = command.name
    if name == "DUMPLOG":
        try:
            desk.check_dump_name(command.filename or "")
        except ValueError as exc:
            return lines.error(command.txn, name, BAD_INPUT, str(exc))
    quote = None
    if name in QUOTED_COMMANDS:
        symbol, user = command.symbol or "", command.user or ""
        quote = desk.cached_quote(symbol)
        if quote is None:
            try:
                quote = await desk.quote(symbol, user)
            except QuoteUnavailable as exc:
                return lines.error(command.txn, name, QUOTE_UNAVAILABLE, str(exc))
    txn = command.txn if command.txn is not None else desk.next_txn()
    spec = DayTradeSpec.from_cents(
        name, command.user, txn, command.symbol, command.amount, command.filename
    )
    try:
        decided = desk.day_trade(spec, quote, session)
    except Exception as exc:  # the producer refused it outright
        return lines.error(txn, name, UNAVAILABLE, f"the log did not take the command: {exc}")
    if name == "DUMPLOG":
        return Later(functools.partial(_dumplog, desk), spec, decided, session)
    return Later(_decision, spec, decided, session)


async def _decided(spec: DayTradeSpec, decided) -> Event | bytes:
    """The command's DayTradeDecided, or the error answer if there is none."""
    try:
        event = await decided
    except DecisionTimeout as exc:
        return lines.error(spec.txn, spec.command, TIMEOUT, str(exc))
    except AppendError as exc:
        return lines.error(spec.txn, spec.command, UNAVAILABLE, str(exc))
    if event.name != DAYTRADE_DECIDED:  # the ledger refused the record itself
        reason = event.record.get("reason") or event.name
        return lines.error(spec.txn, spec.command, "refused", str(reason))
    return event


async def _decision(spec: DayTradeSpec, decided, session: Session) -> Answer:
    event = await _decided(spec, decided)
    return event if isinstance(event, bytes) else lines.decision_answer(event.record)


async def _dumplog(desk: Desk, spec: DayTradeSpec, decided, session: Session) -> Answer:
    """DUMPLOG: once decided, and once the projection shows everything heard up to it, write
    the file and answer with its name and length, followed by its bytes."""
    event = await _decided(spec, decided)
    if isinstance(event, bytes):
        return event
    if not event.record["ok"]:
        return lines.decision_answer(event.record)
    try:
        name, path, length = await desk.dump_log(event, spec.filename or "", session)
        # opened at once: a later DUMPLOG replacing the file does not change what this one sends
        file = await asyncio.to_thread(open, path, "rb")
    except ProjectionTimeout as exc:
        return lines.error(spec.txn, spec.command, TIMEOUT, str(exc))
    except (OSError, ValueError) as exc:
        log.warning("DUMPLOG %s failed: %s", spec.filename, exc)
        return lines.error(spec.txn, spec.command, UNAVAILABLE, f"could not write the log: {exc}")
    return lines.ok(spec.txn, "DUMPLOG", name, length), file, length


async def _close(writer: asyncio.StreamWriter) -> None:
    try:
        writer.close()
        await writer.wait_closed()
    except (ConnectionError, OSError):
        pass
