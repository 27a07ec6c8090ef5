"""The asyncio shell both JSON-lines channels share: accept connections (bounded), read lines
(bounded: an over-long line is refused and skipped), rate-limit them, write lines (a reader that
leaves too much unread is dropped), and, for a server given a heartbeat line and interval, send it
to every connection that has been sent nothing for that long: one periodic sweep over the
server's connections, no task or timer per connection."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from ..config import ChannelSettings
from ..ratelimit import TokenBucket
from . import wire

log = logging.getLogger(__name__)


class LineConnection:
    """One client: ``handle`` each line in order; ``send`` writes without waiting."""

    def __init__(self, settings: ChannelSettings, reader, writer) -> None:
        self.settings = settings
        self.reader, self.writer = reader, writer
        self.lines = wire.LineSplitter(settings.max_line)
        self.bucket = TokenBucket.full(settings.rate, settings.burst, time.monotonic())
        self.closed = False
        self.last_sent = time.monotonic()  # when a line was last written (the heartbeat's clock)

    async def run(self) -> None:
        while not self.closed:
            try:
                async with asyncio.timeout(self.settings.idle_timeout):
                    data = await self.reader.read(65536)
            except TimeoutError:
                self.send(wire.error("idle for too long; goodbye"))
                return
            if not data:
                return
            for line in self.lines.feed(data):
                if line is None:
                    self.send(wire.error(f"line longer than {self.settings.max_line} bytes"))
                elif not self.bucket.take(time.monotonic()):
                    self.send(wire.error("rate limit exceeded on this connection; slow down"))
                else:
                    await self._handle(line)
            await self.drain()

    async def _handle(self, line: bytes) -> None:
        try:
            await self.handle(line)
        except (ConnectionError, asyncio.CancelledError):
            raise
        except Exception:  # a failure of ours must not cost the client its connection
            log.exception("%s: a request failed", type(self).__name__)
            self.send(wire.error("the exchange could not handle this request; try again"))

    async def handle(self, line: bytes) -> None:
        raise NotImplementedError

    def send(self, line: bytes) -> None:
        if self.closed:
            return
        transport = self.writer.transport
        if transport.is_closing():
            self.closed = True
            return
        if transport.get_write_buffer_size() > self.settings.max_backlog:
            log.warning("dropping a channel client that reads too slowly")
            self.closed = True
            transport.abort()
            return
        self.writer.write(line)
        self.last_sent = time.monotonic()

    async def drain(self) -> None:
        with contextlib.suppress(ConnectionError, OSError):
            await self.writer.drain()

    async def close(self) -> None:
        """Called once after ``run`` ends, whatever the reason."""
        self.closed = True


class LineServer:
    """A TCP server of ``LineConnection``s of one kind.

    ``heartbeat`` seconds > 0: a connection sent nothing for that long is sent ``heartbeat_line``
    (by one sweep every quarter of the interval, at most every second: it arrives after between
    ``heartbeat`` and ``heartbeat`` + min(``heartbeat`` / 4, 1 s) of silence)."""

    def __init__(
        self,
        settings: ChannelSettings,
        port: int,
        name: str,
        heartbeat: float = 0.0,
        heartbeat_line: bytes = b"",
    ) -> None:
        self.settings, self.port, self.name = settings, port, name
        self.heartbeat, self.heartbeat_line = heartbeat, heartbeat_line
        self.connections: set[LineConnection] = set()
        self.server: asyncio.Server | None = None
        self._sweeper: asyncio.Task | None = None

    def connection(self, reader, writer) -> LineConnection:
        raise NotImplementedError

    async def start(self) -> None:
        """Listen; a port already taken is logged, not fatal: the gateway's other surfaces (and
        another gateway on this host, such as a test's) go on without this channel."""
        try:
            self.server = await asyncio.start_server(
                self._serve,
                self.settings.host,
                self.port,
                backlog=4096,
                reuse_port=self.settings.reuse_port or None,
            )
        except OSError as exc:
            log.error("the %s channel is not listening on port %d: %s", self.name, self.port, exc)
            return
        if self.heartbeat > 0 and self.heartbeat_line:
            self._sweeper = asyncio.create_task(self._sweeping(), name=f"{self.name}-heartbeats")

    @property
    def bound_port(self) -> int | None:
        """The port listened on (the setting's, or the one the OS chose for port 0)."""
        if self.server is None or not self.server.sockets:
            return None
        return self.server.sockets[0].getsockname()[1]

    async def _sweeping(self) -> None:
        period = min(self.heartbeat / 4, 1.0)
        while True:
            await asyncio.sleep(period)
            due = time.monotonic() - self.heartbeat
            for conn in list(self.connections):
                if conn.last_sent <= due:
                    try:
                        conn.send(self.heartbeat_line)  # sets last_sent: the next a beat later
                    except Exception:  # one broken connection must not stop everyone's beats
                        log.exception("%s channel: a heartbeat failed", self.name)

    async def stop(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
            self._sweeper = None
        if self.server is not None:
            self.server.close()
            for conn in list(self.connections):
                conn.writer.transport.abort()
            await self.server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if len(self.connections) >= self.settings.max_connections:
            writer.write(wire.error("too many connections; try again later"))
            await _close(writer)
            return
        conn = self.connection(reader, writer)
        self.connections.add(conn)
        try:
            await conn.run()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        except Exception:
            log.exception("%s channel connection failed", self.name)
        finally:
            self.connections.discard(conn)
            try:
                await conn.close()
            finally:
                await _close(writer)


async def _close(writer: asyncio.StreamWriter) -> None:
    try:
        writer.close()
        await writer.wait_closed()
    except (ConnectionError, OSError):
        pass
