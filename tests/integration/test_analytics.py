"""The analytics app on the real broker and PostgreSQL: trades flow from the real matcher, the app
is killed -9 mid-stream (with input it has not read, tests/integration/backlog.py) and restarted;
then the candle updates on analytics.candles are exactly one per trade and interval, and both the
topic's newest updates and the projection's ``candles`` table equal candles computed
independently (tests/analytics_reference.py) from the projection's ``trades`` table."""

from __future__ import annotations

import dataclasses
import os
import random
import re
import subprocess
import sys
import threading

import psycopg
import pytest

from services.common.codec import Codec
from services.common.config import ROOT
from services.common.reader import end_offsets, total_offsets
from services.projector import schema
from tests import analytics_reference as ref
from tests.integration import backlog
from tests.integration.test_matcher_service import SYMBOLS, append, encode
from tests.support import ServiceProcs, read_all, settings_env, wait_until
from tests.unit.reference_book import random_stream

pytestmark = pytest.mark.integration
CODEC = Codec()
BASE_US = 1_800_000_000_000_000  # 2027-01-15: the record times the commands carry
STEP_US = 40_000  # random_stream's ts steps (0..5) scaled: 0-200 ms between a symbol's commands


def commands(seed: int, per_symbol: int) -> list[tuple[str, bytes]]:
    """Random matcher input for every symbol, stamped at realistic times that sometimes step back
    a few ms (as stamps of different gateways do), interleaved at random."""
    rng = random.Random(seed)
    streams = {}
    for i, symbol in enumerate(SYMBOLS):
        stream = []
        for command in random_stream(seed + i, per_symbol):
            c = list(command)
            ts = BASE_US + c[1] * STEP_US - rng.randint(0, 30_000)
            if c[0] == "place" and c[8] is not None:
                c[8] = ts + (c[8] - c[1]) * STEP_US
            c[1] = ts
            stream.append(tuple(c))
        streams[symbol] = stream
    pending = {s: 0 for s in SYMBOLS}
    out = []
    while pending:
        symbol = rng.choice(sorted(pending))
        out.append((symbol, encode(symbol, streams[symbol][pending[symbol]], len(out))))
        pending[symbol] += 1
        if pending[symbol] == per_symbol:
            del pending[symbol]
    return out


def projected_trades(database_url: str) -> dict[str, list[tuple[int, int, int, int]]]:
    with schema.connect(database_url) as conn:
        rows = conn.execute("SELECT symbol, seq, ts, price, qty FROM trades ORDER BY symbol, seq")
        out: dict[str, list] = {}
        for symbol, seq, ts, price, qty in rows:
            out.setdefault(symbol, []).append((seq, ts, price, qty))
    return out


def projected_candles(database_url: str) -> dict[tuple, dict]:
    with schema.connect(database_url) as conn:
        cur = conn.execute(
            "SELECT symbol, interval, start_ms AS start, open, high, low, close, volume,"
            " notional, trades, vwap FROM candles"
        )
        names = [d.name for d in cur.description]
        rows = [dict(zip(names, r, strict=True)) for r in cur]
    return {(r.pop("symbol"), r["interval"], r["start"]): r for r in rows}


def expected_candles(trades: dict[str, list]) -> dict[tuple, dict]:
    # trades carry the seq of the symbol's whole tape (orders rested, cancelled... in between)
    return {(s, *k): c for s, ts in trades.items() for k, c in ref.candles(ts).items()}


def updates_on_topic(settings) -> list[dict]:
    topic = settings.topic("analytics.candles")
    return [CODEC.decode(r.value())[1] for r in read_all(settings, topic, timeout=5)]


def newest(updates: list[dict]) -> dict[tuple, dict]:
    keep = ("interval", "start", "open", "high", "low", "close", "volume", "notional", "trades")
    out = {}
    for u in updates:
        out[(u["envelope"]["key"], u["interval"], u["start"])] = {
            **{k: u[k] for k in keep},
            "vwap": u["vwap"],
        }
    return out


def run_example(settings, tmp_path, topic: str) -> set[tuple]:
    """The docs' example consumer as a script over `topic`, until it has printed every trade."""
    text = (ROOT / "docs" / "analytics.md").read_text()
    code = re.search(r"<!-- example-consumer -->\n```python\n(.*?)```", text, re.S).group(1)
    script = tmp_path / "example.py"
    script.write_text(code)
    wanted = sum(1 for r in read_all(settings, topic, timeout=5) if CODEC.decode(r.value())[0]
                 == "marketlog.market.Trade")  # fmt: skip
    proc = subprocess.Popen(
        [sys.executable, str(script), settings.kafka, topic],
        cwd=ROOT,  # it reads ./schemas
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        stdout=subprocess.PIPE,
        text=True,
    )
    lines: list[str] = []

    def read() -> None:
        for line in proc.stdout:
            lines.append(line)

    threading.Thread(target=read, daemon=True).start()
    try:
        wait_until(lambda: len(lines) >= wanted, 60, "the example to print every trade")
    finally:
        proc.kill()
        proc.wait(10)
    printed = set()
    for line in lines:
        symbol, seq, price, qty = line.split()
        printed.add((symbol, int(seq), int(price), int(qty)))
    return printed


def test_kill_9_mid_stream_candles_equal_the_trades_table(settings, database_url, tmp_path):
    settings = dataclasses.replace(settings, database_url=database_url)
    stream, size = commands(11, 700), 700
    chunks = iter([stream[i : i + size] for i in range(0, len(stream), size)])
    group, source = settings.topic_prefix + "analytics", settings.topic("market.events")
    logs = tmp_path / "logs"
    logs.mkdir()
    procs = ServiceProcs(settings, logs)

    def start_analytics() -> subprocess.Popen:
        log = open(logs / "analytics.log", "ab")  # noqa: SIM115 - the child writes it
        return subprocess.Popen(
            [sys.executable, "-m", "services.analytics", "serve"],
            env=settings_env(settings),
            stdout=log,
            stderr=subprocess.STDOUT,
        )

    def progress() -> int:
        return sum(backlog.committed(settings.kafka, group, source).values())

    append(settings, next(chunks))  # delivered: the new topics have their leaders now
    everything = backlog.partitions_of(settings.kafka, [source])
    analytics = start_analytics()
    try:
        procs.start("matcher", "projector")
        backlog.wait_ready(settings.run_dir, "analytics", analytics)
        # the kill must find committed state to restore (not only offsets past resting orders):
        # wait for transactions holding ~100 trades' updates and state before starting it
        sink = settings.topic("analytics.candles")
        wait_until(lambda: total_offsets(settings, sink) >= 200, 60, "committed candle updates")
        kill = backlog.kill_with_unread_input(
            settings.kafka,
            analytics,
            progress=progress,
            inputs=lambda: everything,
            feed=lambda _partitions: append(settings, next(chunks)),
        )
        assert kill.progress > 0 and kill.unread > 0, kill
        analytics = start_analytics()
        backlog.wait_ready(settings.run_dir, "analytics", analytics)
        for chunk in chunks:
            append(settings, chunk)

        def all_projected() -> bool:
            try:
                trades = projected_trades(database_url)
            except psycopg.errors.UndefinedTable:  # the projector has not migrated yet
                return False
            n = sum(len(t) for t in trades.values())
            market = [CODEC.decode(r.value())[0] for r in read_all(settings, source, timeout=5)]
            if n != market.count("marketlog.market.Trade"):
                return False
            return projected_candles(database_url) == expected_candles(trades)

        wait_until(all_projected, 120, "the candles table to equal the trades table's candles")
        # and the app's commits pass all it read, trades, skipped records and markers alike: each
        # partition's committed offset reaches its end, less the last transaction's marker
        # (acked once a record follows it)
        ends = end_offsets(settings, [source])

        def committed_to_the_end() -> bool:
            done = backlog.committed(settings.kafka, group, source)
            return all(done.get(key, 0) >= end - 1 for key, end in ends.items())

        wait_until(committed_to_the_end, 30, "the app to commit all it read")
        trades = projected_trades(database_url)
        expected = expected_candles(trades)
        updates = updates_on_topic(settings)
        # every trade counted once: one update per trade and interval on the topic, none lost,
        # none repeated (a committed update sent again would be a second count downstream)
        per_trade: dict[tuple, list[dict]] = {}
        for u in updates:
            per_trade.setdefault((u["envelope"]["key"], u["seq"], u["interval"]), []).append(u)
        repeated = {k: v for k, v in per_trade.items() if len(v) > 1}
        assert not repeated, repeated
        assert len(per_trade) == 2 * sum(len(t) for t in trades.values())
        assert newest(updates) == expected
        assert len(expected) > 2 * len(SYMBOLS)  # many windows of both intervals
        # and the state counted each trade once too: one committed head record per trade
        state = read_all(settings, settings.topic("analytics.state"), timeout=5)
        heads = [r for r in state if r.key().startswith(b"head:")]
        assert len(heads) == sum(len(t) for t in trades.values())
        # docs/analytics.md's example consumer, run as it is written, prints the same trades
        assert run_example(settings, tmp_path, source) == {
            (symbol, seq, price, qty)
            for symbol, got in trades.items()
            for seq, _ts, price, qty in got
        }
    finally:
        if analytics.poll() is None:
            analytics.terminate()
            analytics.wait(30)
        procs.stop_all()
        print((logs / "analytics.log").read_text()[-3000:])
