"""The quote server over real TCP: started in-process on an ephemeral port (no Kafka, no
PostgreSQL), and once as its own process the way `make run` starts it."""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Awaitable, Callable

import pytest

from services.common.config import Settings
from services.quotes import Quote, QuoteError, core, fetch_quote
from services.quotes.server import QuoteServer
from tests.support import ServiceProcs, free_port

SEED = "integration-seed"
SECRET = core.key_secret(SEED)


def run(test: Callable[[QuoteServer], Awaitable[None]], **options) -> None:
    async def main() -> None:
        server = QuoteServer(SEED, **options)
        await server.start("127.0.0.1", 0)
        try:
            await asyncio.wait_for(test(server), 60)
        finally:
            await server.stop()

    asyncio.run(main())


async def talk(port: int, data: bytes, answers: int) -> list[bytes]:
    """Send data on one connection, read `answers` lines, and check it is still open."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(data)
        await writer.drain()
        return [await asyncio.wait_for(reader.readline(), 10) for _ in range(answers)]
    finally:
        writer.close()
        await writer.wait_closed()


def check_quote(line: bytes, symbol: str, user: str, bucket_ms: int = 1000) -> Quote:
    quote = core.parse_reply(line)
    assert (quote.symbol, quote.user) == (symbol, user)
    assert quote.price_cents == core.price_cents(SEED, symbol, quote.timestamp_ms // bucket_ms)
    assert abs(quote.timestamp_ms - time.time() * 1000) < 60_000
    assert core.verify(SECRET, quote)
    price = line.split(b",")[0]
    assert price.split(b".")[1].isdigit() and len(price.split(b".")[1]) == 2
    return quote


def test_good_requests_in_both_formats_on_one_connection():
    async def test(server: QuoteServer) -> None:
        lines = await talk(
            server.port, b"ABC,jsmith\nS jsmith\r\n  S oY01WVirLr\nwwe,u1\r\nHTJ , x9 \n", 5
        )
        expected = [("ABC", "jsmith"), ("S", "jsmith"), ("S", "oY01WVirLr"), ("WWE", "u1")]
        expected.append(("HTJ", "x9"))
        quotes = [check_quote(line, *e) for line, e in zip(lines, expected, strict=True)]
        assert len({q.cryptokey for q in quotes}) == 5

    run(test)


BAD = [
    (b"ABCD,jsmith\n", "symbol 'ABCD' must be 1 to 3 letters"),
    (b"A1,jsmith\n", "must be 1 to 3 letters"),
    (b"ABC,\n", "empty userid"),
    (b"ABC\n", "expected SYM,userid"),
    (b"\n", "empty request"),
    (b"ABC,a,b\n", "expected SYM,userid, got 3 fields"),
    (b"\x00\xff\xfe\x80garbage\x1b[2J\n", "not ASCII"),
    (b"ABC,js\x07mith\n", "printable ASCII"),
    (b"x" * 5000 + b"\n", "request longer than 1024 bytes"),
    (b"ABC," + b"u" * 1100 + b"\n", "request longer than 1024 bytes"),
]


@pytest.mark.parametrize(("data", "message"), BAD)
def test_bad_input_gets_an_error_line_and_the_connection_keeps_working(data, message):
    async def test(server: QuoteServer) -> None:
        lines = await talk(server.port, data + b"ABC,after\n" + data + b"S after\n", 4)
        for error in (lines[0], lines[2]):
            assert error.startswith(b"ERROR,") and error.endswith(b"\n")
            assert message in error.decode("ascii")
        check_quote(lines[1], "ABC", "after")
        check_quote(lines[3], "S", "after")

    run(test)


def test_every_bad_input_in_one_stream_each_answered_in_order():
    async def test(server: QuoteServer) -> None:
        stream = b"".join(data + b"ABC,ok\n" for data, _ in BAD)
        lines = await talk(server.port, stream, 2 * len(BAD))
        for (_, message), error, good in zip(BAD, lines[::2], lines[1::2], strict=True):
            assert error.startswith(b"ERROR,") and message in error.decode()
            check_quote(good, "ABC", "ok")

    run(test)


def test_a_long_line_in_slow_pieces():
    async def test(server: QuoteServer) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        for _ in range(30):
            writer.write(b"y" * 100)
            await writer.drain()
        error = await asyncio.wait_for(reader.readline(), 10)  # answered before its newline
        assert error == b"ERROR,request longer than 1024 bytes\n"
        writer.write(b"y" * 100 + b"\nABC,u\n")
        check_quote(await asyncio.wait_for(reader.readline(), 10), "ABC", "u")
        writer.write(b"S,last")  # no newline: answered at end of stream
        writer.write_eof()
        check_quote(await asyncio.wait_for(reader.readline(), 10), "S", "last")
        assert await reader.read() == b""
        writer.close()

    run(test)


def test_200_concurrent_clients():
    async def test(server: QuoteServer) -> None:
        async def one_shot(i: int) -> Quote:
            return await fetch_quote("127.0.0.1", server.port, "ABC", f"user{i}")

        async def persistent(i: int) -> list[Quote]:
            request = f"XYZ,p{i}\nbad!,p{i}\nQ p{i}\n".encode()
            lines = await talk(server.port, request * 5, 15)
            assert all(line.startswith(b"ERROR,") for line in lines[1::3])
            return [check_quote(line, *sym_user) for line, sym_user in _expected(lines, i)]

        shots, kept = await asyncio.gather(  # 400 clients at once
            asyncio.gather(*(one_shot(i) for i in range(200))),
            asyncio.gather(*(persistent(i) for i in range(200))),
        )
        quotes = shots + [q for qs in kept for q in qs]
        assert [q.user for q in shots] == [f"user{i}" for i in range(200)]
        assert len(quotes) == 200 + 200 * 10
        assert len({q.cryptokey for q in quotes}) == len(quotes)
        for _ in range(100):  # every handler sees its client leave
            if server.connections == 0:
                break
            await asyncio.sleep(0.05)
        assert server.connections == 0

    run(test)


def _expected(lines: list[bytes], i: int):
    for n, line in enumerate(lines):
        if n % 3 == 0:
            yield line, ("XYZ", f"p{i}")
        elif n % 3 == 2:
            yield line, ("Q", f"p{i}")


def test_delay_is_per_request_not_per_server():
    async def test(server: QuoteServer) -> None:
        start = time.monotonic()
        quotes = await asyncio.gather(
            *(fetch_quote("127.0.0.1", server.port, "ABC", f"u{i}") for i in range(50))
        )
        took = time.monotonic() - start
        assert len(quotes) == 50
        assert 0.3 <= took < 5.0  # each waited 300 ms, all at once
        error_start = time.monotonic()
        assert (await talk(server.port, b"ABCD,u\n", 1))[0].startswith(b"ERROR,")
        assert time.monotonic() - error_start < 0.3  # refusals do not wait

    run(test, delay_ms=300)


def test_fetch_quote_errors():
    async def test(server: QuoteServer) -> None:
        quote = await fetch_quote("127.0.0.1", server.port, "abc", "jsmith")
        assert quote.symbol == "ABC" and core.verify(SECRET, quote)
        with pytest.raises(QuoteError, match="symbol 'ABCD'"):
            await fetch_quote("127.0.0.1", server.port, "ABCD", "jsmith")
        with pytest.raises(QuoteError, match="empty userid"):
            await fetch_quote("127.0.0.1", server.port, "ABC", "")
        with pytest.raises(OSError):
            await fetch_quote("127.0.0.1", free_port(), "ABC", "jsmith")

    run(test)


def test_fetch_quote_refuses_odd_servers():
    async def serve_with(reply: bytes) -> Callable:
        async def handler(reader, writer) -> None:
            await reader.readline()
            writer.write(reply)
            await writer.drain()
            if reply:
                await asyncio.sleep(5)
            writer.close()

        return handler

    async def main() -> None:
        cases = [
            (b"", "hung up"),
            (b"12.00,ABC,someone_else,1,key\n", "answered for ABC,someone_else"),
            (b"garbage\n", "malformed"),
            (b"ERROR,busy\n", "quote server: busy"),
        ]
        for reply, message in cases:
            server = await asyncio.start_server(await serve_with(reply), "127.0.0.1", 0)
            port = server.sockets[0].getsockname()[1]
            with pytest.raises(QuoteError, match=message):
                await fetch_quote("127.0.0.1", port, "ABC", "jsmith", timeout=3)
            server.close()
        silent = await asyncio.start_server(await serve_with(b"no newline"), "127.0.0.1", 0)
        with pytest.raises(TimeoutError):
            await fetch_quote(
                "127.0.0.1", silent.sockets[0].getsockname()[1], "A", "u", timeout=0.3
            )
        silent.close()

    asyncio.run(main())


def test_idle_connections_are_closed_and_stop_hangs_up():
    async def test(server: QuoteServer) -> None:
        reader, _ = await asyncio.open_connection("127.0.0.1", server.port)
        assert await asyncio.wait_for(reader.read(), 5) == b""  # idle past 0.2 s

        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(b"ABC,u\n")
        check_quote(await reader.readline(), "ABC", "u")
        await server.stop()
        assert await asyncio.wait_for(reader.read(), 5) == b""

    run(test, idle_timeout=0.2)


def test_a_client_that_never_reads_is_dropped_and_others_are_served():
    async def test(server: QuoteServer) -> None:
        _, greedy = await asyncio.open_connection("127.0.0.1", server.port)
        greedy.transport.set_write_buffer_limits(high=1 << 30)
        greedy.write(b"ABC,greedy\n" * 400_000)  # ~24 MB of replies it never reads
        check_quote((await talk(server.port, b"S,polite\n", 1))[0], "S", "polite")
        for _ in range(200):
            if server.connections == 0:
                break
            await asyncio.sleep(0.05)
        assert server.connections == 0  # the greedy one was hung up on
        greedy.close()

    run(test, idle_timeout=0.5)


def test_quote_server_process(tmp_path):
    port = free_port()
    settings = Settings(run_dir=tmp_path / "run")
    procs = ServiceProcs(
        settings,
        tmp_path,
        MARKETLOG_QUOTE_PORT=str(port),
        MARKETLOG_QUOTE_SEED=SEED,
        MARKETLOG_QUOTE_BUCKET_MS="60000",
    )
    try:
        procs.start("quotes", timeout=60)
        quote = asyncio.run(fetch_quote("127.0.0.1", port, "ABC", "jsmith"))
        assert quote.price_cents == core.price_cents(SEED, "ABC", quote.timestamp_ms // 60_000)
        assert core.verify(SECRET, quote)
        procs.signal("quotes", signal.SIGTERM)
        assert procs.procs["quotes"].wait(10) == 0
    finally:
        procs.stop_all()
    assert f"quote server on 127.0.0.1:{port}" in procs.log("quotes")


def test_quote_server_process_refuses_a_taken_port(tmp_path):
    async def main() -> None:
        taken = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
        port = taken.sockets[0].getsockname()[1]
        procs = ServiceProcs(
            Settings(run_dir=tmp_path / "run"), tmp_path, MARKETLOG_QUOTE_PORT=str(port)
        )
        try:
            with pytest.raises(RuntimeError, match=r"quote server: .*address already in use"):
                procs.start("quotes", timeout=60)
        finally:
            procs.stop_all()
            taken.close()

    asyncio.run(main())
