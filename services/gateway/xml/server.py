"""The XML/TCP server (protocols.md §1): connections that pipeline their requests.

A connection's task reads requests as they arrive and starts each at once, in arrival order
(``handler.start``: parse it, append its commands); a second task per connection awaits their
replies one after another and writes them in request order. So a connection's commands are
appended in arrival order while earlier requests still wait for their decisions, and each reply is
made only once every earlier request of the connection is answered (what a ``<query>`` relies on).
A ``<create>`` starts only once every earlier request is answered, and the next request only once
it is (an account it creates exists for the next request).

Limits per connection: at most ``max_inflight`` requests (``MARKETLOG_XML_MAX_INFLIGHT``, 1,000)
read and not yet answered, past which the server stops reading the socket until answers go out
(backpressure, not an error); the token bucket (``MARKETLOG_XML_RATE``/``_BURST``) per request as
it arrives; a reply the client leaves unread for the idle timeout closes the connection. A frame
error is answered in its turn; a fatal one closes the connection once every earlier reply is
written.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque

from ..config import GatewaySettings
from ..desk import Desk
from ..ratelimit import TokenBucket
from ..sessions import Session
from . import handler, reply
from .framing import Frame, FrameError, FrameReader, frame
from .request import CreateRequest

log = logging.getLogger(__name__)

READ_LIMIT = 1 << 16
# bytes written and not yet sent past which the answering task waits for the client to read
WRITE_HIGH_WATER = 1 << 16


class XmlServer:
    def __init__(
        self, desk: Desk, settings: GatewaySettings, max_inflight: int | None = None
    ) -> None:
        self.desk = desk
        self.settings = settings
        self.max_inflight = max_inflight if max_inflight is not None else settings.xml_max_inflight
        self.connections = 0
        self.server: asyncio.Server | None = None

    async def start(self) -> asyncio.Server:
        self.server = await asyncio.start_server(
            self._serve,
            self.settings.xml_host,
            self.settings.xml_port,
            backlog=4096,
            reuse_port=self.settings.reuse_port or None,
            # bytes the stream buffers before it stops reading the socket (twice this): the
            # frames are cut by FrameReader, so this bounds memory, not a request's size
            limit=READ_LIMIT,
        )
        return self.server

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.connections >= self.settings.max_connections:
            writer.write(reply.document_error("too many connections; try again later"))
            await _close(writer)
            return
        self.connections += 1
        try:
            await Connection(self, reader, writer).run()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        except asyncio.CancelledError:  # the server stops: end quietly (asyncio would log it)
            pass
        except Exception:
            log.exception("XML connection failed")
        finally:
            self.connections -= 1
            await _close(writer)


class Connection:
    def __init__(self, server: XmlServer, reader, writer) -> None:
        self.server, self.reader, self.writer = server, reader, writer
        self.settings = server.settings
        self.max_inflight = server.max_inflight
        self.frames = FrameReader(self.settings.max_body)
        self.desk = server.desk
        self.session = Session()
        self.bucket = TokenBucket.full(
            self.settings.conn_rate, self.settings.conn_burst, time.monotonic()
        )
        # each request's reply in request order: the document, or the coroutine that makes it
        # (handler.Pending), and whether it goes framed
        self.replies: deque[tuple[handler.Pending, bool]] = deque()
        self.unanswered = 0  # requests read and not yet answered (queued or being answered)
        self.broken = False  # the client is gone or not reading: write nothing more
        self._ended = False  # no more requests will be queued
        self._more: asyncio.Future | None = None  # the answering task waits here for requests
        self._room: asyncio.Future | None = None  # the reading task waits here for answers
        self._room_at = 0  # ... until at most this many requests are unanswered

    async def run(self) -> None:
        answering = asyncio.create_task(self._answer_all())
        try:
            await self._read()
        finally:
            # the client may only have ended its side: answer everything it sent, then close
            self._ended = True
            self._wake_answering()
            try:
                await answering  # cancelling run() cancels it too
            finally:
                self._drop_unanswered()

    # -- reading and starting requests, in arrival order -------------------------------------
    async def _read(self) -> None:
        while not self.broken:
            # a request under way must arrive soon; between requests a client may idle longer
            mid_frame = self.frames.mid_frame
            wait = self.settings.body_timeout if mid_frame else self.settings.idle_timeout
            try:
                async with asyncio.timeout(wait):  # wait_for would make a task per read
                    data = await self.reader.read(65536)
            except TimeoutError:
                if mid_frame:
                    self._queue(reply.document_error("timed out waiting for the request"))
                    return
                if self.unanswered:  # waiting for answers is not idling
                    continue
                return
            if not data:
                problem = self.frames.truncated()
                if problem is not None:
                    self._queue(reply.document_error(problem.message))
                return
            self.frames.feed(data)
            if not await self._take_frames():
                return

    async def _take_frames(self) -> bool:
        """Start every whole request received; False once the connection must stop reading."""
        while True:
            if self.unanswered >= self.max_inflight:  # backpressure: read on once answers go out
                await self._until_unanswered(self.max_inflight - 1)
            if self.broken:
                return False
            try:
                request = self.frames.next()
            except FrameError as exc:
                self._queue(reply.document_error(exc.message))
                if exc.fatal:
                    return False
                continue
            if request is None:
                return True
            await self._start(request)

    async def _start(self, request: Frame) -> None:
        framed = request.framed_reply or self.settings.framed_replies
        if not self.bucket.take(time.monotonic()):
            body = reply.document_error("rate limit exceeded on this connection; slow down")
            self._queue(body, framed)
            return
        parsed = handler.parse(request.body, self.settings.max_children)
        if isinstance(parsed, CreateRequest):
            # after every earlier request is answered; the next one starts after it is
            await self._until_unanswered(0)
            if self.broken:
                return
        elif isinstance(parsed, bytes):
            self._queue(parsed, framed)
            return
        self._queue(await handler.start(self.desk, parsed, self.session), framed)

    def _queue(self, pending: handler.Pending, framed: bool = False) -> None:
        self.unanswered += 1
        self.replies.append((pending, framed))
        self._wake_answering()

    def _wake_answering(self) -> None:
        if self._more is not None and not self._more.done():
            self._more.set_result(None)

    async def _until_unanswered(self, most: int) -> None:
        while self.unanswered > most and not self.broken:
            self._room_at = most
            self._room = asyncio.get_running_loop().create_future()
            try:
                await self._room
            finally:
                self._room = None

    # -- answering, in request order -----------------------------------------------------------
    async def _answer_all(self) -> None:
        replies = self.replies
        try:
            while True:
                if not replies:
                    if self._ended:
                        return
                    self._more = asyncio.get_running_loop().create_future()
                    try:
                        await self._more
                    finally:
                        self._more = None
                    continue
                pending, framed = replies[0]
                try:
                    body = pending if isinstance(pending, bytes) else await pending
                except Exception:
                    log.exception("XML request failed")
                    self._hang_up()
                    body = b""
                replies.popleft()
                if not self.broken:
                    await self._send(frame(body) if framed else body)
                self.unanswered -= 1
                if self._room is not None and self.unanswered <= self._room_at:
                    self._wake_reading()
        finally:
            if not self._ended:  # stopped early (the gateway stops): stop reading too
                self._hang_up()
            self._wake_reading()

    async def _send(self, data: bytes) -> None:
        transport = self.writer.transport
        if transport.is_closing():  # the client hung up: answer the rest into the void
            self.broken = True
            return
        self.writer.write(data)
        if transport.get_write_buffer_size() > WRITE_HIGH_WATER:
            try:
                async with asyncio.timeout(self.settings.idle_timeout):
                    await self.writer.drain()
            except (ConnectionError, TimeoutError):  # gone, or not reading its replies
                self._hang_up()

    def _hang_up(self) -> None:
        self.broken = True
        self.writer.transport.abort()

    def _wake_reading(self) -> None:
        if self._room is not None and not self._room.done():
            self._room.set_result(None)

    def _drop_unanswered(self) -> None:
        """Stopped before answering everything (the gateway stops): close what never ran."""
        while self.replies:
            pending, _ = self.replies.popleft()
            if not isinstance(pending, bytes):
                pending.close()


async def _close(writer: asyncio.StreamWriter) -> None:
    try:
        writer.close()
        await writer.wait_closed()
    except (ConnectionError, OSError):
        pass
