"""The XML connection pipelines its requests (services/gateway/xml/server.py), against a fake desk:
commands appended in arrival order, replies written in request order, a query reads only after
every earlier child of the connection is answered, a <create> before the next request starts,
at most ``max_inflight`` requests read and unanswered, errors in their turn."""

from __future__ import annotations

import asyncio
import dataclasses
import gc
import warnings

import pytest

from services.gateway.bus import DecisionTimeout, Event
from services.gateway.commands import ACCEPTED, ACCOUNT
from services.gateway.config import GatewaySettings
from services.gateway.projection import OrderView
from services.gateway.sessions import Session
from services.gateway.xml.server import XmlServer

CREATED = ACCOUNT + "AccountCreated"


class FakeDesk:
    """Appends in call order; each decision is a future the test resolves (``decide``)."""

    def __init__(self) -> None:
        self.accounts = {"1"}
        self.symbols = {"X"}
        self.appended: list[tuple] = []  # (what, account, detail), in append order
        self.decisions: list[asyncio.Future] = []  # one per append, same order
        self.answered: set[int] = set()  # order ids whose answer was given (noted)
        self.reads: list[tuple[int, bool]] = []  # (order id, answered when read)
        self.order_ids = iter(range(100, 1_000_000))
        self.auto = False  # decide every append at once

    async def has_account(self, account: str) -> bool:
        return account in self.accounts

    async def has_symbol(self, symbol: str) -> bool:
        return symbol in self.symbols

    def _append(self, what: str, account: str, detail, record: dict):
        future = asyncio.get_running_loop().create_future()
        self.appended.append((what, account, detail))
        self.decisions.append(future)
        if self.auto:
            future.set_result(record)
        return self._answer(what, future)

    async def _answer(self, what: str, future: asyncio.Future) -> Event:
        record = await future
        if isinstance(record, Exception):
            raise record
        if what == "order":
            self.answered.add(record["order_id"])
        name = CREATED if what == "account" else ACCEPTED
        return Event(name, record, 0, len(self.answered))

    def place_order(self, account, spec, session: Session, *, matched=False, surface="other"):
        assert matched  # an XML order is answered once matched
        order_id = next(self.order_ids)
        return self._append("order", account, (spec, order_id), {"order_id": order_id})

    def cancel_order(self, account, order_id, session):
        raise AssertionError("not in these tests")

    def open_account(self, account: str, balance: int, session: Session):
        return self._created(account, self._append("account", account, balance, {}))

    async def _created(self, account: str, decision) -> Event:
        event = await decision
        self.accounts.add(account)  # as the directory hears it, before the answer is given
        return event

    async def order(self, account: str, order_id: int, session: Session):
        self.reads.append((order_id, order_id in self.answered))
        if order_id not in self.answered:
            return None
        row = {"open_qty": 100, "cancelled_qty": 0, "cancelled_ts": None, "updated_ts": 0}
        return OrderView(row, [])

    def decide(self, n: int, record: dict | Exception | None = None) -> None:
        """Resolve the n-th append's decision (as appended: an order keeps its id)."""
        future = self.decisions[n]
        what, _, detail = self.appended[n]
        if record is None:
            record = {"order_id": detail[1]} if what == "order" else {}
        future.set_result(record)


ORDER = b'<transactions id="1"><order sym="X" amount="1" limit="2"/></transactions>'


def framed(*bodies: bytes) -> bytes:
    return b"".join(b"%d\n%s" % (len(b), b) for b in bodies)


async def serve(desk: FakeDesk, max_inflight: int = 1000, **settings):
    base = GatewaySettings(xml_host="127.0.0.1", xml_port=0, conn_rate=1e6, conn_burst=1e6)
    server = XmlServer(desk, dataclasses.replace(base, **settings), max_inflight=max_inflight)
    await server.start()
    port = server.server.sockets[0].getsockname()[1]
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    return server, reader, writer


async def replies(reader: asyncio.StreamReader, n: int, timeout: float = 5) -> list[bytes]:
    async with asyncio.timeout(timeout):
        return [await reader.readuntil(b"</results>\n") for _ in range(n)]


async def settle(rounds: int = 20) -> None:
    for _ in range(rounds):
        await asyncio.sleep(0)
    await asyncio.sleep(0.01)


def run(scenario) -> None:
    asyncio.run(asyncio.wait_for(scenario(), 10))


def test_requests_are_appended_in_arrival_order_and_answered_in_request_order():
    async def scenario():
        desk = FakeDesk()
        server, reader, writer = await serve(desk)
        two = b'<transactions id="1"><order sym="X" amount="-3" limit="5"/></transactions>'
        writer.write(framed(ORDER, two, ORDER))
        await settle()
        # all three appended before any is decided: pipelined
        assert [spec.qty for _, _, (spec, _) in desk.appended] == [100, 300, 100]
        assert [spec.side for _, _, (spec, _) in desk.appended] == ["BUY", "SELL", "BUY"]
        desk.decide(2)
        desk.decide(1)
        await settle()
        assert reader._buffer == b""  # nothing written while the first is unanswered
        desk.decide(0)
        first, second, third = await replies(reader, 3)
        assert b'id="100"' in first and b'amount="1"' in first
        assert b'id="101"' in second and b'amount="-3"' in second
        assert b'id="102"' in third
        writer.close()
        await server.stop()

    run(scenario)


def test_a_query_in_a_later_request_reads_after_the_earlier_order_is_answered():
    async def scenario():
        desk = FakeDesk()
        server, reader, writer = await serve(desk)
        query = b'<transactions id="1"><query id="100"/></transactions>'
        writer.write(framed(ORDER, query))
        await settle()
        assert desk.reads == []  # the query waits for the order's answer
        desk.decide(0)
        opened, status = await replies(reader, 2)
        assert b"<opened" in opened
        assert desk.reads == [(100, True)]
        assert b'<status id="100">' in status and b'<open shares="1"/>' in status
        writer.close()
        await server.stop()

    run(scenario)


def test_a_query_waits_for_earlier_children_of_its_own_and_earlier_requests():
    async def scenario():
        desk = FakeDesk()
        server, reader, writer = await serve(desk)
        both = (
            b'<transactions id="1"><order sym="X" amount="1" limit="2"/>'
            b'<query id="100"/><query id="101"/></transactions>'
        )
        writer.write(framed(ORDER, both))
        await settle()
        assert len(desk.appended) == 2 and desk.reads == []
        desk.decide(1)  # the second request's order first: still no read
        await settle()
        assert desk.reads == []
        desk.decide(0)
        first, second = await replies(reader, 2)
        assert b"<opened" in first
        assert desk.reads == [(100, True), (101, True)]
        assert second.count(b"<status") == 2 and b"<opened" in second
        writer.close()
        await server.stop()

    run(scenario)


def test_a_create_runs_after_earlier_requests_and_the_next_request_after_it():
    async def scenario():
        desk = FakeDesk()
        server, reader, writer = await serve(desk)
        create = b'<create><account id="7" balance="1000"/></create>'
        trade = b'<transactions id="7"><order sym="X" amount="1" limit="2"/></transactions>'
        writer.write(framed(ORDER, create, trade))
        await settle()
        assert [a[0] for a in desk.appended] == ["order"]  # the create waits for the order
        desk.decide(0)
        await settle()
        assert [a[0] for a in desk.appended] == ["order", "account"]  # the trade for the create
        desk.decide(1)
        await settle()
        assert [a[:2] for a in desk.appended] == [("order", "1"), ("account", "7"), ("order", "7")]
        desk.decide(2)
        opened, created, opened7 = await replies(reader, 3)
        assert b"<opened" in opened and b'<created id="7"/>' in created
        assert b"<opened" in opened7 and b"unknown account" not in opened7
        writer.close()
        await server.stop()

    run(scenario)


def test_at_most_max_inflight_requests_are_read_and_unanswered():
    async def scenario():
        desk = FakeDesk()
        server, reader, writer = await serve(desk, max_inflight=3)
        writer.write(framed(*[ORDER] * 10))
        await settle()
        assert len(desk.appended) == 3  # stopped reading: backpressure, not an error
        desk.decide(1)
        await settle()
        assert len(desk.appended) == 3  # the first is still unanswered
        desk.decide(0)
        await settle()
        assert len(desk.appended) == 5
        desk.auto = True
        for n in range(2, 5):
            desk.decide(n)
        answers = await replies(reader, 10)
        assert [b'id="%d"' % (100 + i) in a for i, a in enumerate(answers)] == [True] * 10
        assert len(desk.appended) == 10
        writer.close()
        await server.stop()

    run(scenario)


def test_backpressure_stops_reading_the_socket():
    async def scenario():
        desk = FakeDesk()
        server, reader, writer = await serve(desk, max_inflight=2)
        body = ORDER.replace(b"</transactions>", b" " * 60_000 + b"</transactions>")
        sent = 0
        while writer.transport.get_write_buffer_size() == 0:  # until the socket is full
            assert sent < 1000, "the server kept reading"
            for _ in range(10):
                writer.write(framed(body))
            sent += 10
            await settle(2)
        assert len(desk.appended) == 2  # stopped reading: backpressure, not an error
        desk.auto = True
        desk.decide(0)
        desk.decide(1)
        answers = await replies(reader, sent, timeout=8)
        assert len(answers) == sent and len(desk.appended) == sent
        writer.close()
        await server.stop()

    run(scenario)


def test_errors_are_answered_in_their_turn():
    async def scenario():
        desk = FakeDesk()
        server, reader, writer = await serve(desk)
        bad = b"<transactions id='1'><order"
        unknown = b'<transactions id="9"><order sym="X" amount="1" limit="2"/></transactions>'
        writer.write(framed(ORDER, bad, unknown) + b"0\n" + framed(ORDER))
        await settle()
        assert len(desk.appended) == 2
        desk.decide(1)
        desk.decide(0, DecisionTimeout("no decision for command c within 10s", "c"))
        answers = await replies(reader, 5)
        assert b"no decision for command" in answers[0]
        assert b"not well-formed" in answers[1] or b"<error" in answers[1]
        assert b"unknown account 9" in answers[2]
        assert b"empty request" in answers[3]
        assert b'<opened sym="X" amount="1" limit="2" id="101"/>' in answers[4]
        writer.close()
        await server.stop()

    run(scenario)


def test_a_fatal_frame_error_closes_after_the_earlier_replies():
    async def scenario():
        desk = FakeDesk()
        server, reader, writer = await serve(desk)
        writer.write(framed(ORDER, ORDER) + b"abc\n" + framed(ORDER))
        await settle()
        assert len(desk.appended) == 2  # nothing after the broken frame is read
        desk.decide(1)
        desk.decide(0)
        first, second, error = await replies(reader, 3)
        assert b'id="100"' in first and b'id="101"' in second
        assert b"bad length line" in error
        async with asyncio.timeout(5):
            assert await reader.read() == b""  # then closed
        assert len(desk.appended) == 2
        await server.stop()

    run(scenario)


def test_the_rate_limit_refuses_a_request_in_its_turn():
    async def scenario():
        desk = FakeDesk()
        desk.auto = True
        server, reader, writer = await serve(desk, conn_rate=0.001, conn_burst=2)
        writer.write(framed(ORDER, ORDER, ORDER))
        answers = await replies(reader, 3)
        assert [b"<opened" in a for a in answers] == [True, True, False]
        assert b"rate limit exceeded" in answers[2]
        writer.close()
        await server.stop()

    run(scenario)


def test_a_client_that_ends_its_side_still_gets_every_reply():
    async def scenario():
        desk = FakeDesk()
        server, reader, writer = await serve(desk)
        writer.write(framed(ORDER, ORDER, ORDER))
        writer.write_eof()
        await settle()
        for n in (2, 0, 1):
            desk.decide(n)
        answers = await replies(reader, 3)
        assert [b'id="%d"' % (100 + i) in a for i, a in enumerate(answers)] == [True] * 3
        async with asyncio.timeout(5):
            assert await reader.read() == b""
        await server.stop()

    run(scenario)


def test_framed_replies_keep_their_framing_per_request():
    async def scenario():
        desk = FakeDesk()
        desk.auto = True
        server, reader, writer = await serve(desk)
        writer.write(b"%d framed\n%s" % (len(ORDER), ORDER) + framed(ORDER))
        async with asyncio.timeout(5):
            size = int(await reader.readline())
            first = await reader.readexactly(size)
            (second,) = await replies(reader, 1)
        assert first.endswith(b"</results>\n") and b'id="100"' in first
        assert second.startswith(b"<?xml") and b'id="101"' in second
        writer.close()
        await server.stop()

    run(scenario)


@pytest.mark.parametrize("requests", [1, 50])
def test_a_client_that_hangs_up_leaves_nothing_behind(requests):
    async def scenario():
        desk = FakeDesk()
        server, _, writer = await serve(desk)
        writer.write(framed(*[ORDER] * requests))
        await settle()
        assert len(desk.appended) == requests
        writer.transport.abort()
        await settle()
        desk.auto = True
        for n in range(requests):
            desk.decide(n)
        async with asyncio.timeout(5):
            while server.connections:
                await asyncio.sleep(0.01)
        await server.stop()

    run(scenario)


def test_stopping_with_requests_unanswered_drops_them_quietly():
    async def scenario():
        desk = FakeDesk()
        _server, _, writer = await serve(desk)
        two = ORDER.replace(b"</transactions>", b'<query id="100"/></transactions>')
        writer.write(framed(ORDER, two, ORDER))
        await settle()
        assert len(desk.appended) == 3
        # the scenario ends unanswered: asyncio.run cancels the connection's tasks

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        run(scenario)
        gc.collect()
    assert [str(w.message) for w in caught if "never awaited" in str(w.message)] == []
