"""The XML/TCP server (protocols.md §1): one asyncio task per connection, requests answered in
the order they arrive, the connection kept open for the next one."""

from __future__ import annotations

import asyncio
import logging
import time

from ..config import GatewaySettings
from ..desk import Desk
from ..ratelimit import TokenBucket
from ..sessions import Session
from . import reply
from .framing import Frame, FrameError, FrameReader, frame
from .handler import answer

log = logging.getLogger(__name__)


class XmlServer:
    def __init__(self, desk: Desk, settings: GatewaySettings) -> None:
        self.desk = desk
        self.settings = settings
        self.connections = 0
        self.server: asyncio.Server | None = None

    async def start(self) -> asyncio.Server:
        self.server = await asyncio.start_server(
            self._serve,
            self.settings.xml_host,
            self.settings.xml_port,
            backlog=4096,
            limit=self.settings.max_body + 1024,
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
        except Exception:
            log.exception("XML connection failed")
        finally:
            self.connections -= 1
            await _close(writer)


class Connection:
    def __init__(self, server: XmlServer, reader, writer) -> None:
        self.server, self.reader, self.writer = server, reader, writer
        self.settings = server.settings
        self.frames = FrameReader(self.settings.max_body)
        self.desk = server.desk
        self.session = Session()
        self.bucket = TokenBucket.full(
            self.settings.conn_rate, self.settings.conn_burst, time.monotonic()
        )

    async def run(self) -> None:
        while True:
            # a request under way must arrive soon; between requests a client may idle longer
            wait = (
                self.settings.body_timeout if self.frames.mid_frame else self.settings.idle_timeout
            )
            try:
                async with asyncio.timeout(wait):  # wait_for would make a task per read
                    data = await self.reader.read(65536)
            except TimeoutError:
                if self.frames.mid_frame:
                    await self._send(reply.document_error("timed out waiting for the request"))
                return
            if not data:
                problem = self.frames.truncated()
                if problem is not None:
                    await self._send(reply.document_error(problem.message))
                return
            self.frames.feed(data)
            if not await self._drain_frames():
                return

    async def _drain_frames(self) -> bool:
        """Answer every whole request received; False once the connection must close."""
        while True:
            try:
                request = self.frames.next()
            except FrameError as exc:
                await self._send(reply.document_error(exc.message))
                if exc.fatal:
                    return False
                continue
            if request is None:
                return True
            await self._respond(request)

    async def _respond(self, request: Frame) -> None:
        if not self.bucket.take(time.monotonic()):
            body = reply.document_error("rate limit exceeded on this connection; slow down")
        else:
            body = await answer(self.desk, request.body, self.session, self.settings.max_children)
        framed = request.framed_reply or self.settings.framed_replies
        await self._send(frame(body) if framed else body)

    async def _send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()


async def _close(writer: asyncio.StreamWriter) -> None:
    try:
        writer.close()
        await writer.wait_closed()
    except (ConnectionError, OSError):
        pass
