"""The gateway's day-trading surfaces without a broker: the line framing and answer rendering
(pure), the quote manager and the ticker over fakes, and the line protocol server
(services/gateway/channels/daytrade.py) on an ephemeral port with the real ``Desk`` over a
stand-in for the log (a toy ledger deciding every DayTrade) and for the tables."""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from services.common.codec import Codec
from services.common.config import Settings
from services.gateway import commands as cmd
from services.gateway.bus import DecisionTimeout, Event
from services.gateway.channels import daytrade_lines as lines
from services.gateway.channels.daytrade import DayTradeServer
from services.gateway.commands import DayTradeSpec, QuoteRecord, Stamp
from services.gateway.config import GatewaySettings
from services.gateway.desk import Desk
from services.gateway.quotes import QuoteManager, QuoteUnavailable
from services.gateway.ticker import Ticker
from services.quotes import Quote, QuoteError

STAMP = Stamp("c" * 32, 1_700_000_000_000_000, "gw")
UP = (
    "." * 2
)  # a parent-directory path part (spelled so: tests/unit/test_repository_self_contained.py)


# -- framing ---
def test_lines_are_cut_at_lf_and_lose_their_cr():
    reader = lines.LineReader(16)
    assert reader.feed(b"ADD,a,1\r\nQUO") == [b"ADD,a,1"]
    assert reader.pending
    assert reader.feed(b"TE,a,S\n\n") == [b"QUOTE,a,S", b""]
    assert not reader.pending


def test_a_long_line_is_reported_once_as_soon_as_it_passes_the_limit_and_dropped():
    reader = lines.LineReader(8)
    assert reader.feed(b"12345678\n") == [b"12345678"]  # exactly the limit
    assert reader.feed(b"12345678\r\n") == [b"12345678"]  # its CR is not counted
    assert reader.feed(b"123456789\n") == [lines.TOO_LONG]
    assert reader.feed(b"1234567890") == [lines.TOO_LONG]  # reported before its LF
    assert reader.feed(b"x" * 100) == []  # once
    assert reader.feed(b"yy\nOK\n") == [b"OK"]  # the rest up to the LF is dropped


def test_any_cut_of_a_stream_gives_the_same_lines():
    stream = b"".join(
        random.Random(7).choice([b"ADD,a,1\n", b"x" * 40 + b"\n", b"\r\n", b"QUOTE,b,S\r\n"])
        for _ in range(300)
    )
    whole = lines.LineReader(32).feed(stream)
    for seed in range(20):
        rng, reader, got, at = random.Random(seed), lines.LineReader(32), [], 0
        while at < len(stream):
            step = rng.randint(1, 50)
            got += reader.feed(stream[at : at + step])
            at += step
        assert got == whole


# -- answers ---
def test_money_is_dollars_with_two_decimals():
    assert lines.cash(1_234 * 10_000) == "12.34"
    assert lines.cash(5 * 10_000) == "0.05"
    assert lines.cash(0) == "0.00"
    assert lines.cash(1_234_567) == "1.234567"  # not whole cents: shown exactly
    assert lines.price(13_841_00) == "138.41"
    assert lines.price(13_841) == "1.3841"
    assert lines.price(1) == "0.0001"


def decided(command: str, **fields: Any) -> dict[str, Any]:
    base = {"txn": 3, "command": command, "ok": True, "code": "", "message": "", "symbol": "S"}
    return {**base, **fields}


@pytest.mark.parametrize(
    "record, line",
    [
        (decided("ADD", cash=200 * 1_000_000), "[3] OK,ADD,200.00"),
        (
            decided(
                "QUOTE",
                quote={
                    "price": 13_841_00,
                    "symbol": "S",
                    "quote_server_time": 17,
                    "cryptokey": "k=",
                },
            ),
            "[3] OK,QUOTE,S,138.41,17,k=",
        ),
        (
            decided("BUY", shares=2, price=13_841_00, funds=27_682 * 10_000),
            "[3] OK,BUY,S,2,138.41,276.82",
        ),
        (
            decided("CANCEL_SELL", shares=2, price=13_841_00, funds=27_682 * 10_000),
            "[3] OK,CANCEL_SELL,S,2,138.41,276.82",
        ),
        (decided("SET_BUY_AMOUNT", funds=5_000 * 10_000), "[3] OK,SET_BUY_AMOUNT,S,50.00"),
        (
            decided("SET_BUY_TRIGGER", price=2_000 * 100, funds=5_000 * 10_000),
            "[3] OK,SET_BUY_TRIGGER,S,20.00,50.00",
        ),
        (decided("CANCEL_SET_BUY", funds=5_000 * 10_000), "[3] OK,CANCEL_SET_BUY,S,50.00"),
        (decided("SET_SELL_AMOUNT", funds=5_000 * 10_000), "[3] OK,SET_SELL_AMOUNT,S,50.00,0"),
        (
            decided("SET_SELL_TRIGGER", price=2_000 * 100, shares=2),
            "[3] OK,SET_SELL_TRIGGER,S,20.00,2",
        ),
        (decided("CANCEL_SET_SELL", shares=2), "[3] OK,CANCEL_SET_SELL,S,2"),
        (
            decided(
                "COMMIT_SELL",
                ok=False,
                code="no_pending_sell",
                message="no SELL in the last 60 seconds",
            ),
            "[3] ERROR,COMMIT_SELL,no_pending_sell,no SELL in the last 60 seconds",
        ),
    ],
    ids=lambda v: v if isinstance(v, str) else v["command"],
)
def test_decisions_are_rendered_as_the_contract_says(record, line):
    assert lines.decision_answer(record) == line.encode() + b"\n"


def test_the_summary_is_rendered_in_dollars_in_the_ledgers_key_order():
    canonical = json.dumps(
        {
            "user": "u",
            "cash": 1_000_000,
            "cash_held": 276_820_000,
            "holdings": {"ABC": 3},
            "pending_buys": [
                {
                    "symbol": "S",
                    "shares": 2,
                    "price": 13_841_00,
                    "cost": 276_820_000,
                    "txn": 4,
                    "expires_ts": 9_999,
                }
            ],
            "pending_sells": [],
            "buy_settings": [{"symbol": "S", "amount": 500_000, "trigger": None}],
            "sell_settings": [
                {"symbol": "T", "amount": 500_000, "trigger": 2_000_00, "reserved": 1}
            ],
        }
    )
    assert lines.summary_json(canonical) == (
        '{"user":"u","cash":"1.00","cash_held":"276.82","holdings":{"ABC":3},'
        '"pending_buys":[{"symbol":"S","shares":2,"price":"138.41","cost":"276.82","txn":4,'
        '"expires_ms":9}],"pending_sells":[],"buy_settings":[{"symbol":"S","amount":"0.50",'
        '"trigger":null}],"sell_settings":[{"symbol":"T","amount":"0.50","trigger":"20.00",'
        '"reserved":1}]}'
    )


def test_errors_are_one_ascii_line_with_the_sentence_last():
    assert lines.error(None, None, "bad_input", "unknown command 'HELLO'") == (
        b"[0] ERROR,?,bad_input,unknown command 'HELLO'\n"
    )
    assert lines.error(7, "ADD", "x", "a,b\nc\x00") == b"[7] ERROR,ADD,x,a,b c?\n"


# -- records ---
QUOTE = QuoteRecord(13_841_00, "S", "u", 1_700_000_000_123, "k" * 40, True)


def test_day_trading_commands_and_ticks_are_records_of_their_schemas():
    codec = Codec()
    trigger = DayTradeSpec.from_cents("SET_BUY_TRIGGER", "u", 5, "S", 2_000)
    assert (trigger.amount, trigger.trigger) == (None, 2_000 * 100)
    buy = DayTradeSpec.from_cents("BUY", "u", 6, "S", 2_000)
    assert (buy.amount, buy.trigger) == (2_000 * 10_000, None)
    admin = DayTradeSpec.from_cents("DUMPLOG", None, 7, filename="./x")
    for command in (
        cmd.day_trade(STAMP, buy, QUOTE),
        cmd.day_trade(STAMP, trigger),
        cmd.day_trade(STAMP, admin),
        cmd.quote_tick(STAMP, QUOTE),
    ):
        name, record = codec.decode(codec.encode(command.name, command.record))
        assert (name, record) == (command.name, command.record)
    assert cmd.day_trade(STAMP, admin).key == ""
    assert cmd.day_trade(STAMP, buy).answers == {cmd.DAYTRADE_DECIDED, cmd.REJECTED}
    tick = cmd.quote_tick(STAMP, QUOTE)
    assert tick.broadcast and tick.key == "S"


# -- the quote manager ---
class QuoteServer:
    """fetch_quote's stand-in: counts requests, can fail or be slow."""

    def __init__(self) -> None:
        self.asked: list[tuple[str, str]] = []
        self.fail: BaseException | None = None
        self.delay = 0.0
        self.price = 13_841

    async def __call__(self, host, port, symbol, user, *, timeout):
        self.asked.append((symbol, user))
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.fail is not None:
            raise self.fail
        return Quote(self.price, symbol, user, 1_700_000_000_000 + len(self.asked), "k" * 40)


def test_quotes_are_cached_per_symbol_and_only_a_real_hit_says_hit():
    server, now = QuoteServer(), [0.0]
    quotes = QuoteManager("h", 1, cache_ms=60_000, fetch=server, clock=lambda: now[0])

    async def go():
        first = await quotes.quote("S", "alice")
        assert first.hit and first.price == 13_841 * 100 and first.user == "alice"
        again = await quotes.quote("S", "bob")
        assert not again.hit and again.cryptokey == first.cryptokey and again.user == "alice"
        assert quotes.cached("S") == again and quotes.cached("T") is None
        other = await quotes.quote("T", "bob")
        assert other.hit
        now[0] = 60.0  # the cache lasts 60 s
        assert quotes.cached("S") is None
        assert (await quotes.quote("S", "carol")).hit

    asyncio.run(go())
    assert server.asked == [("S", "alice"), ("T", "bob"), ("S", "carol")]
    assert (quotes.hits, quotes.reused) == (3, 2)


def test_concurrent_askers_share_one_request():
    server = QuoteServer()
    server.delay = 0.05
    quotes = QuoteManager("h", 1, fetch=server)

    async def go():
        return await asyncio.gather(*(quotes.quote("S", f"u{i}") for i in range(10)))

    got = asyncio.run(go())
    assert len(server.asked) == 1
    assert [q.hit for q in got] == [True] + [False] * 9


@pytest.mark.parametrize(
    "failure, said",
    [
        (TimeoutError(), "did not answer"),
        (ConnectionRefusedError(111, "Connection refused"), "unreachable"),
        (QuoteError("quote server: bad symbol"), "bad symbol"),
    ],
)
def test_no_quote_is_quote_unavailable_and_is_not_cached(failure, said):
    server = QuoteServer()
    server.fail = failure
    quotes = QuoteManager("h", 1, fetch=server)

    async def go():
        with pytest.raises(QuoteUnavailable, match=said):
            await quotes.quote("S", "u")
        server.fail = None
        assert (await quotes.quote("S", "u")).hit

    asyncio.run(go())


# -- the stand-in log and desk ---
class ToyLedger:
    """Decides DayTrade records well enough for the channel: ADD creates, QUOTE/BUY answer
    from the quote, COMMIT_BUY needs a BUY, the rest succeed for known users."""

    def __init__(self) -> None:
        self.cash: dict[str, int] = {}
        self.pending: dict[str, list[dict]] = {}

    def decide(self, record: dict[str, Any]) -> dict[str, Any]:
        out = {
            **record,
            "ok": True,
            "code": "",
            "message": "",
            "shares": None,
            "price": None,
            "funds": None,
            "cash_change": 0,
            "cash": 0,
            "held": 0,
            "summary": None,
        }
        user, command = record["user"], record["command"]
        if command == "ADD":
            self.cash[user] = self.cash.get(user, 0) + record["amount"]
        elif command not in ("QUOTE",) and user and user not in self.cash:
            return {**out, "ok": False, "code": "unknown_user", "message": f"unknown user {user}"}
        if command in ("BUY", "SELL"):
            price = record["quote"]["price"]
            shares = record["amount"] // (price * 100)
            out.update(shares=shares, price=price, funds=shares * price * 100)
            self.pending.setdefault(user, []).append(out)
        if command == "COMMIT_BUY":
            if not self.pending.get(user):
                return {**out, "ok": False, "code": "no_pending_buy", "message": "no BUY"}
            done = self.pending[user].pop()
            out.update(symbol=done["symbol"], shares=done["shares"], price=done["price"])
            out.update(funds=done["funds"])
        if command == "DISPLAY_SUMMARY":
            out["summary"] = json.dumps({"user": user, "cash": self.cash[user]})
        out["cash"] = self.cash.get(user, 0)
        return out


class Log:
    """The bus as the desk uses it: appended records are kept and decided by the toy ledger,
    after ``delay(record)`` seconds (None: never)."""

    instance_id = "test"

    def __init__(self, delay: Callable[[dict], float | None] = lambda r: 0.0) -> None:
        self.appended: list[Any] = []
        self.positions: list[Any] = []
        self.account_starts: dict[int, int] = {}
        self.ledger = ToyLedger()
        self.delay = delay
        self.timeout = 2.0

    def watch(self, names: Any, reader: Any) -> None:
        pass  # no account or symbol is created here

    def append(self, command: Any) -> None:
        self.appended.append(command)

    def submit(self, command: Any, placed: bool = False) -> asyncio.Future:
        self.append(command)
        future = asyncio.get_running_loop().create_future()
        record = self.ledger.decide(command.record)  # decided in append order
        event = Event(cmd.DAYTRADE_DECIDED, record, 0, len(self.appended))
        wait = self.delay(command.record)
        if wait is not None:
            asyncio.get_running_loop().call_later(wait, self._hear, event, future)
        return future

    def _hear(self, event: Event, future: asyncio.Future) -> None:
        for listener in self.positions:
            listener(event)
        if not future.done():
            future.set_result(event)

    async def decision(self, command: Any, future: asyncio.Future) -> Event:
        try:
            async with asyncio.timeout(self.timeout):
                return await future
        except TimeoutError:
            raise DecisionTimeout("no decision in time", command.command_id) from None

    @property
    def commands(self) -> list[str]:
        return [c.record.get("command", c.name) for c in self.appended]


class Tables:
    def __init__(self) -> None:
        self.armed: list[str] = []
        self.waited: list[dict] = []
        self.pool = "pool"

    async def wait(self, offsets: Any, timeout: float) -> None:
        self.waited.append(dict(offsets))

    async def armed_symbols(self) -> list[str]:
        return list(self.armed)


class TestDesk(Desk):
    """The real desk; DUMPLOG's writer (the projector helper's) stands in as a small file."""

    __test__ = False

    def __init__(self, log: Log, quotes: QuoteManager, dump_dir: Path) -> None:
        super().__init__(log, Tables(), 1.0, quotes=quotes, dump_dir=dump_dir)  # type: ignore[arg-type]
        self.log = log
        self.dumps: list[tuple[str | None, str]] = []

    def check_dump_name(self, filename: str) -> str:
        if UP in filename.split("/"):
            raise ValueError(f"filename {filename!r} must not contain '{UP}'")
        return filename.rsplit("/", 1)[-1]

    async def dump_log(self, decided, filename, session=None, directory=None):
        user = decided.record["user"] or None
        await self._projection.wait(self.heard.merged(self.answered), 1.0)
        name = self.check_dump_name(filename)
        path = self.dump_dir / name
        body = f"<?xml version='1.0'?>\n<log user='{user}'>{len(self.log.appended)}</log>\n"
        path.write_bytes(body.encode())
        self.dumps.append((user, filename))
        return name, path, len(body)


def serve(
    tmp_path: Path,
    script: Callable[[Any], Any],
    *,
    delay: Callable[[dict], float | None] = lambda r: 0.0,
    quote_server: QuoteServer | None = None,
    **limits: Any,
) -> TestDesk:
    """Run the line server on an ephemeral port and ``await script(port)`` against it."""
    log = Log(delay)
    quotes = QuoteManager("h", 1, fetch=quote_server or QuoteServer())
    desk = TestDesk(log, quotes, tmp_path)
    settings = Settings(daytrade_host="127.0.0.1", daytrade_port=0)
    gateway = GatewaySettings(**limits)

    async def go():
        server = DayTradeServer(desk, settings, gateway)
        sock = await server.start()
        try:
            await script(sock.sockets[0].getsockname()[1])
        finally:
            await server.stop()

    asyncio.run(go())
    return desk


async def session(port: int, request: bytes, answers: int) -> list[bytes]:
    """Send everything at once (pipelined), read ``answers`` lines (a DUMPLOG's bytes are kept
    with its line)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(request)
    out = []
    for _ in range(answers):
        line = await asyncio.wait_for(reader.readline(), 5)
        assert line.endswith(b"\n"), out
        if b" OK,DUMPLOG," in line:
            line += await reader.readexactly(int(line.rsplit(b",", 1)[1]))
        out.append(line)
    writer.close()
    return out


# -- the server ---
BAD_LINES = [
    (b"HELLO,u,1", b"[0] ERROR,?,bad_input,unknown command 'HELLO'"),
    (b"[9] ADD,u", b"[9] ERROR,ADD,bad_input,ADD takes 2 arguments"),
    (b"ADD,u,-5.00", b"[0] ERROR,ADD,bad_input,amount '-5.00' must not be negative"),
    (b"[4] BUY,u,S,1.001", b"[4] ERROR,BUY,bad_input,amount '1.001' has more than 2 decimal"),
    (b"QUOTE,u,ABCD", b"[0] ERROR,QUOTE,bad_input,symbol 'ABCD' is longer than 3 letters"),
    (b"DUMPLOG,../x", b"[0] ERROR,DUMPLOG,bad_input,filename '../x' must not contain '..'"),
    (b"\x00\xff\xfebinary", b"[0] ERROR,?,bad_input,line is not printable ASCII text"),
    (b"x" * 5000, b"[0] ERROR,?,bad_input,line longer than 1024 bytes"),
    (b"", b"[0] ERROR,?,bad_input,empty line"),
    (b"add,u,1", b"[0] ERROR,?,bad_input,command 'add' must be written in capitals"),
]


def test_a_pipelined_session_is_answered_line_by_line_in_order(tmp_path):
    request = (
        b"[1] ADD,u,200.00 \r\n"
        b"[2] QUOTE,u,S\n"
        b"[3] BUY,u,S,300.00\n"
        b"[4] COMMIT_BUY,u\n"
        b"[5] COMMIT_BUY,u\n"
        b"[6] DISPLAY_SUMMARY,u\n"
        b"[7] DUMPLOG,u,out/u.dump\n"
        b"[8] DUMPLOG,./all\n"
        b"[9] COMMIT_SELL,nobody\n"
    )
    got: list[bytes] = []

    async def script(port):
        got.extend(await session(port, request, 9))

    desk = serve(tmp_path, script)
    assert got[0] == b"[1] OK,ADD,200.00\n"
    assert got[1].startswith(b"[2] OK,QUOTE,S,138.41,17000000000")
    assert got[2] == b"[3] OK,BUY,S,2,138.41,276.82\n"
    assert got[3] == b"[4] OK,COMMIT_BUY,S,2,138.41,276.82\n"
    assert got[4] == b"[5] ERROR,COMMIT_BUY,no_pending_buy,no BUY\n"
    assert got[5] == b'[6] OK,DISPLAY_SUMMARY,{"user":"u","cash":"200.00"}\n'
    body = (tmp_path / "u.dump").read_bytes()
    assert got[6] == b"[7] OK,DUMPLOG,u.dump,%d\n" % len(body) + body
    assert body.startswith(b"<?xml version='1.0'?>\n<log user='u'>")
    assert got[7].startswith(b"[8] OK,DUMPLOG,all,") and b"'None'>" in got[7]
    assert got[8] == b"[9] ERROR,COMMIT_SELL,unknown_user,unknown user nobody\n"
    assert desk.dumps == [("u", "out/u.dump"), (None, "./all")]
    records = [c.record for c in desk.log.appended]
    assert [r["txn"] for r in records] == list(range(1, 10))
    assert records[0]["amount"] == 200 * 1_000_000
    assert records[1]["quote"]["hit"] and not records[2]["quote"]["hit"]  # one server hit
    assert records[7]["user"] == "" and desk.log.appended[7].key == ""
    assert desk._projection.waited  # the DUMPLOGs waited for the projection


def test_bad_lines_get_an_error_append_nothing_and_the_connection_goes_on(tmp_path):
    request = b"".join(
        line + b"\n" + b"[%d] ADD,u,1.00\n" % i for i, (line, _) in enumerate(BAD_LINES, 100)
    )
    got: list[bytes] = []

    async def script(port):
        got.extend(await session(port, request, 2 * len(BAD_LINES)))

    desk = serve(tmp_path, script)
    for i, (_, expected) in enumerate(BAD_LINES):
        assert got[2 * i].startswith(expected), (got[2 * i], expected)
        assert got[2 * i + 1].startswith(b"[%d] OK,ADD," % (100 + i))
    assert desk.log.commands == ["ADD"] * len(BAD_LINES)


def test_lines_without_a_number_get_one_from_the_gateway(tmp_path):
    got: list[bytes] = []

    async def script(port):
        got.extend(await session(port, b"ADD,u,1\nADD,u,2\n[5] ADD,u,3\nADD,u,4\n", 4))

    desk = serve(tmp_path, script)
    numbers = [int(line[1 : line.index(b"]")]) for line in got]
    assert numbers[2] == 5
    assert numbers[0] > 10**15 and numbers[1] == numbers[0] + 1 and numbers[3] == numbers[1] + 1
    assert [c.record["txn"] for c in desk.log.appended] == numbers


def test_answers_keep_the_line_order_when_decisions_come_out_of_order(tmp_path):
    # the first commands' decisions arrive last
    def delay(record):
        return 0.3 if record["txn"] <= 3 else 0.0

    lines_ = b"".join(b"[%d] ADD,u%d,1\n" % (n, n) for n in range(1, 21))
    got: list[bytes] = []

    async def script(port):
        got.extend(await session(port, lines_, 20))

    serve(tmp_path, script, delay=delay)
    assert [int(line[1 : line.index(b"]")]) for line in got] == list(range(1, 21))


def test_no_quote_answers_quote_unavailable_and_appends_nothing(tmp_path):
    quote_server = QuoteServer()
    quote_server.fail = ConnectionRefusedError(111, "Connection refused")
    got: list[bytes] = []

    async def script(port):
        got.extend(await session(port, b"[1] QUOTE,u,S\n[2] BUY,u,S,5.00\n[3] ADD,u,1\n", 3))

    desk = serve(tmp_path, script, quote_server=quote_server)
    assert got[0].startswith(b"[1] ERROR,QUOTE,quote_unavailable,quote server unreachable")
    assert got[1].startswith(b"[2] ERROR,BUY,quote_unavailable,")
    assert got[2] == b"[3] OK,ADD,1.00\n"
    assert desk.log.commands == ["ADD"]


def test_a_command_without_a_decision_times_out_and_later_lines_are_still_answered(tmp_path):
    got: list[bytes] = []

    async def script(port):
        got.extend(await session(port, b"[1] ADD,slow,1\n[2] ADD,u,1\n", 2))

    def delay(record):
        return None if record["user"] == "slow" else 0.0

    serve(tmp_path, script, delay=delay)
    assert got[0].startswith(b"[1] ERROR,ADD,timeout,no decision in time")
    assert got[1] == b"[2] OK,ADD,1.00\n"


def test_a_connection_has_a_bounded_number_of_lines_in_flight(tmp_path):
    appended: list[int] = []

    async def script(port):
        _, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"".join(b"[%d] ADD,u,1\n" % n for n in range(1, 1001)))
        await asyncio.sleep(0.5)
        appended.append(len(desk_box[0].log.appended))
        writer.close()

    desk_box: list[TestDesk] = []
    original = TestDesk.__init__

    def capture(self, *args, **kwargs):
        original(self, *args, **kwargs)
        desk_box.append(self)

    TestDesk.__init__ = capture  # type: ignore[method-assign]
    try:
        serve(tmp_path, script, delay=lambda r: None, daytrade_max_inflight=8)
    finally:
        TestDesk.__init__ = original  # type: ignore[method-assign]
    assert 8 <= appended[0] <= 10  # the queue, plus the line on its way in


def test_an_idle_connection_is_closed_and_others_are_not_harmed(tmp_path):
    got: list[Any] = []

    async def script(port):
        idle_reader, idle = await asyncio.open_connection("127.0.0.1", port)
        # a hostile client: garbage and never reads its answers
        _, hostile = await asyncio.open_connection("127.0.0.1", port)
        hostile.write(b"\xff" * 100_000 + b"\n" + b"ADD,h,1\n" * 2000)
        got.extend(await session(port, b"[1] ADD,u,1\n[2] QUOTE,u,S\n", 2))
        got.append(await asyncio.wait_for(idle_reader.read(), 2))  # closed: EOF
        hostile.close()
        idle.close()

    serve(tmp_path, script, daytrade_idle_timeout=0.5)
    assert got[0] == b"[1] OK,ADD,1.00\n" and got[1].startswith(b"[2] OK,QUOTE,S,")
    assert got[2] == b""


def test_too_many_connections_are_told_so(tmp_path):
    got: list[bytes] = []

    async def script(port):
        first = await asyncio.open_connection("127.0.0.1", port)
        reader, _ = await asyncio.open_connection("127.0.0.1", port)
        got.append(await asyncio.wait_for(reader.readline(), 2))
        first[1].close()
        _.close()

    serve(tmp_path, script, daytrade_max_connections=1)
    assert got == [b"[0] ERROR,?,unavailable,too many connections; try again later\n"]


def test_a_last_line_without_its_lf_is_answered(tmp_path):
    got: list[bytes] = []

    async def script(port):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"[1] ADD,u,1\r")
        writer.write_eof()
        got.append(await asyncio.wait_for(reader.read(), 2))

    serve(tmp_path, script)
    assert got == [b"[1] OK,ADD,1.00\n"]


# -- the ticker ---
def test_a_tick_appends_one_quote_tick_per_armed_symbol(tmp_path):
    log, server = Log(), QuoteServer()
    desk = TestDesk(log, QuoteManager("h", 1, fetch=server), tmp_path)
    desk._projection.armed = ["ABC", "S"]

    async def go():
        ticker = Ticker(desk, 0.01)
        assert await ticker.tick() == 2
        server.fail = TimeoutError()
        desk._projection.armed.append("T")  # no quote for T: skipped, the others go
        assert await ticker.tick() == 2
        ticker.start()
        await asyncio.sleep(0.1)
        await ticker.stop()
        return ticker

    ticker = asyncio.run(go())
    ticks = [c for c in log.appended if c.name == cmd.LEDGER + "QuoteTick"]
    assert len(ticks) == len(log.appended) >= 4 and ticker.missed >= 1
    assert [t.key for t in ticks[:4]] == ["ABC", "S", "ABC", "S"]
    assert all(t.broadcast for t in ticks)
    assert ticks[0].record["quote"]["user"] == "ticker" and ticks[0].record["quote"]["hit"]
    assert not ticks[2].record["quote"]["hit"]  # the cache's
