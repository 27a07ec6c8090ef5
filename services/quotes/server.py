"""The quote server's shell: asyncio TCP, one task per connection, answers in request order.

Everything it decides comes from services.quotes.core; this file reads the clock, draws the run's
random boot bytes, sleeps the configured delay and moves bytes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import resource
import signal
import time
from collections.abc import Callable

from services.common.config import Settings

from . import core

log = logging.getLogger(__name__)

READ_CHUNK = 4096


class QuoteServer:
    def __init__(
        self,
        seed: str,
        *,
        delay_ms: int = 0,
        bucket_ms: int = 1000,
        idle_timeout: float = 300.0,
        clock_ms: Callable[[], int] = lambda: time.time_ns() // 1_000_000,
        boot: bytes | None = None,
    ) -> None:
        if delay_ms < 0 or bucket_ms <= 0:
            raise ValueError("the delay must be >= 0 ms and the bucket > 0 ms")
        self.seed, self.delay_ms, self.bucket_ms = seed, delay_ms, bucket_ms
        self.idle_timeout, self.clock_ms = idle_timeout, clock_ms
        self.boot = boot if boot is not None else os.urandom(4)
        self.counter = 0
        self.writers: dict[asyncio.StreamWriter, asyncio.Task] = {}
        self.server: asyncio.Server | None = None

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> asyncio.Server:
        self.server = await asyncio.start_server(self._serve, host, port, backlog=4096)
        return self.server

    @property
    def port(self) -> int:
        assert self.server is not None, "not started"
        return self.server.sockets[0].getsockname()[1]

    @property
    def connections(self) -> int:
        return len(self.writers)

    async def stop(self) -> None:
        """Stop listening and hang up on every client."""
        if self.server is not None:
            self.server.close()
            for writer in list(self.writers):
                writer.close()
            if self.writers:
                await asyncio.wait(list(self.writers.values()), timeout=5)
            await self.server.wait_closed()

    def quote(self, request: core.Request) -> core.Quote:
        """A fresh quote: now's price, a cryptokey no other quote of this run has."""
        nonce = core.nonce(self.boot, self.counter)
        self.counter += 1
        return core.make_quote(self.seed, request, self.clock_ms(), self.bucket_ms, nonce)

    async def answer(self, line: bytes | None) -> bytes:
        """The reply line to one request line (None: it was too long); never raises."""
        if line is core.TOO_LONG:
            return core.error_line(f"request longer than {core.MAX_LINE} bytes")
        try:
            request = core.parse_request(line)
        except core.QuoteError as exc:
            return core.error_line(str(exc))
        if self.delay_ms:
            await asyncio.sleep(self.delay_ms / 1000)
        return self.quote(request).line()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.writers[writer] = asyncio.current_task()
        try:
            await self._converse(reader, writer)
        except (ConnectionError, TimeoutError):
            pass
        except Exception:
            log.exception("quote connection failed")
        finally:
            self.writers.pop(writer, None)
            writer.close()
            with contextlib.suppress(ConnectionError, OSError):
                await writer.wait_closed()

    async def _converse(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        splitter = core.LineSplitter()
        while True:
            data = await asyncio.wait_for(reader.read(READ_CHUNK), self.idle_timeout)
            for line in splitter.feed(data) if data else splitter.finish():
                writer.write(await self.answer(line))
                # a client that asks without reading is dropped once its replies stop moving
                await asyncio.wait_for(writer.drain(), self.idle_timeout)
            if not data:
                return


def _raise_fd_limit() -> None:
    """Thousands of connections need thousands of descriptors."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 1 << 20), hard))


async def serve(settings: Settings) -> None:
    server = QuoteServer(
        settings.quote_seed, delay_ms=settings.quote_delay_ms, bucket_ms=settings.quote_bucket_ms
    )
    await server.start(settings.quote_host, settings.quote_port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    settings.mark_ready("quotes")
    log.info(
        "quote server on %s:%d (delay %d ms, %d ms buckets)",
        settings.quote_host,
        server.port,
        settings.quote_delay_ms,
        settings.quote_bucket_ms,
    )
    await stop.wait()
    await server.stop()


def main() -> int:
    _raise_fd_limit()
    settings = Settings()
    try:
        import uvloop
    except ImportError:
        asyncio.run(serve(settings))
    else:
        uvloop.run(serve(settings))
    return 0
