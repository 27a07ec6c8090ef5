"""Day trading through the real projector into PostgreSQL, and DUMPLOG out of it.

Hand-made ledger decisions (tests/unit/test_projector_daytrading.py's ``scenario``) are encoded
with the real codec, appended to account.events, projected by the real projector, rendered by
services/gateway/dumplog.py (admin and per user) and validated against the course's
logfile.xsd (widened dates). Then: the audit passes, a rebuild gives the same rows and the same
file, and a 100,000-entry log renders in bounded memory."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import time
import tracemalloc
from pathlib import Path

import pytest
from confluent_kafka import Producer
from lxml import etree
from psycopg_pool import AsyncConnectionPool

from services.common.codec import Codec
from services.common.kafka import producer_config
from services.gateway import dumplog
from services.projector import audit, rows, schema, service, store
from testkit.log import partition_for
from tests.integration.test_projector import Running, query, wait_caught_up
from tests.unit.test_projector_daytrading import (
    ADMIN_COUNTS,
    ALICE_COUNTS,
    T0,
    A,
    C,
    P,
    decided,
    quote,
    scenario,
)

pytestmark = pytest.mark.integration

XSD = Path(__file__).resolve().parents[1] / "data" / "seng468" / "logfile-widened.xsd"
RANK = {name: n for n, name in enumerate(dumplog.ELEMENTS)}


@pytest.fixture
def cfg(settings, database_url):
    return dataclasses.replace(settings, database_url=database_url)


def produce(cfg, records: list[tuple[str, dict]]) -> list[tuple[int, int]]:
    """Append the decisions to account.events, each on its key's partition (QuoteTicked on 0,
    as the ledger writes it); their (partition, offset)s."""
    codec, topic = Codec(), cfg.topic("account.events")
    producer = Producer(producer_config(cfg))
    where, next_offset = [], {}
    for name, record in records:
        key = record["envelope"]["key"]
        partition = 0 if name.endswith("QuoteTicked") else partition_for(key, cfg.partitions)
        producer.produce(topic, codec.encode(name, record), key, partition=partition)
        offset = next_offset[partition] = next_offset.get(partition, -1) + 1
        where.append((partition, offset))
    assert producer.flush(60) == 0
    return where


def pool_for(cfg) -> AsyncConnectionPool:
    """As the gateway holds it (services/gateway/projection.py)."""
    return AsyncConnectionPool(
        cfg.database_url,
        min_size=1,
        max_size=2,
        open=False,
        kwargs={
            "options": f"-c search_path={schema.LIVE}",
            "autocommit": True,
            "prepare_threshold": None,
        },
    )


def render(cfg, user, dump_dir, filename, until=None):
    async def go():
        pool = pool_for(cfg)
        await pool.open(wait=True, timeout=30)
        try:
            return await dumplog.write_dumplog(pool, user, dump_dir, filename, until=until)
        finally:
            await pool.close()

    return asyncio.run(go())


def valid_entries(path: Path) -> list:
    schema_doc = etree.XMLSchema(etree.parse(str(XSD)))
    tree = etree.parse(str(path))
    schema_doc.assertValid(tree)
    return list(tree.getroot())


def order_key(entry) -> tuple[int, int, int]:
    return int(entry.findtext("timestamp")), int(entry.findtext("transactionNum")), RANK[entry.tag]


def counts(entries) -> dict[str, int]:
    found: dict[str, int] = {}
    for e in entries:
        found[e.tag] = found.get(e.tag, 0) + 1
    return found


def test_day_trading_decisions_project_and_dump_valid_logs(cfg, tmp_path):
    records = scenario()
    where = produce(cfg, records)
    running = Running(cfg)
    try:
        wait_caught_up(cfg)
    finally:
        running.stop()

    # balances with the day-trading flows; accounts the ADDs created; armed triggers; shares
    assert query(
        cfg,
        "SELECT account_id, available, held, deposited, daytrade_added, daytrade_paid,"
        " daytrade_received, daytrade_held FROM balances ORDER BY 1",
    ) == [
        ("alice", 85_628 * C, 0, 0, 100_000 * C, 19_372 * C, 5000 * C, 0),
        ("bob", 4000 * C, 1000 * C, 0, 5000 * C, 0, 0, 1000 * C),
    ]
    assert query(cfg, "SELECT account_id, initial_balance FROM accounts ORDER BY 1") == [
        ("alice", 0),
        ("bob", 0),
    ]
    assert query(cfg, "SELECT account_id, symbol, side, trigger, txn FROM daytrade_triggers") == [
        ("bob", "XYZ", "BUY", 500 * P, 17)
    ]
    assert query(cfg, "SELECT DISTINCT symbol FROM daytrade_triggers") == [("XYZ",)]
    assert query(
        cfg, "SELECT account_id, symbol, bought, sold FROM daytrade_shares ORDER BY 1, 2"
    ) == [
        ("alice", "ABC", 8, 4),
        ("alice", "XYZ", 5, 0),
    ]
    passed, lines = audit.audit(cfg.database_url)
    assert passed, lines

    # the admin DUMPLOG (the last decision) and alice's, each up to its own userCommand
    dumps = tmp_path / "dumps"
    name, path, size = render(cfg, None, dumps, "./testLOG", until=where[-1])
    assert (name, path, size) == ("testLOG", dumps / "testLOG", path.stat().st_size)
    data = path.read_bytes()
    assert data.startswith(b'<?xml version="1.0"?>\n<log>\n  <userCommand>')
    assert data.endswith(b"</log>\n")
    admin = valid_entries(path)
    assert counts(admin) == ADMIN_COUNTS
    keys = [order_key(e) for e in admin]
    assert keys == sorted(keys)
    last = admin[-1]
    assert (last.tag, last.findtext("command"), last.findtext("filename")) == (
        "userCommand",
        "DUMPLOG",
        "./testLOG",
    )
    assert last.find("username") is None
    # same ms: alice's [8] before bob's [9], though bob's was logged first
    same_ms = [int(e.findtext("transactionNum")) for e in admin if e.tag == "userCommand"]
    assert same_ms.index(8) < same_ms.index(9)
    # the expiry release (number 11) comes before the DISPLAY_SUMMARY [12] that swept it
    (expiry,) = [
        n
        for n, e in enumerate(admin)
        if e.findtext("transactionNum") == "11" and e.findtext("action") == "add"
    ]
    (summary,) = [n for n, e in enumerate(admin) if e.findtext("command") == "DISPLAY_SUMMARY"]
    assert expiry < summary
    assert admin[expiry].findtext("timestamp") == admin[summary].findtext("timestamp")
    error = next(e for e in admin if e.tag == "errorEvent")
    assert error.findtext("errorMessage") == "unknown_user: unknown user bob"
    trigger = next(e for e in admin if e.tag == "systemEvent")
    assert [trigger.findtext(f) for f in ("command", "username", "stockSymbol", "funds")] == [
        "SET_BUY_TRIGGER",
        "alice",
        "XYZ",
        "95.00",
    ]

    alice_at = where[[r.get("txn") for _, r in records].index(18)]
    name, alice_path, _ = render(cfg, "alice", dumps, "logs/alice.xml", until=alice_at)
    assert name == "alice.xml"
    mine = valid_entries(alice_path)
    assert counts(mine) == ALICE_COUNTS
    assert {e.findtext("username") for e in mine} == {"alice"}
    assert [order_key(e) for e in mine] == sorted(order_key(e) for e in mine)
    assert (mine[-1].tag, mine[-1].findtext("command")) == ("userCommand", "DUMPLOG")
    # the adds minus the removes are the change of alice's available cash
    cash = sum(
        (1 if e.findtext("action") == "add" else -1) * round(float(e.findtext("funds")) * 100)
        for e in mine
        if e.tag == "accountTransaction"
    )
    assert cash == 85_628

    # without a cutoff: every projected entry (here the same: the admin DUMPLOG was last)
    render(cfg, None, dumps, "all.xml")
    assert (dumps / "all.xml").read_bytes() == data
    assert sorted(os.listdir(dumps)) == ["alice.xml", "all.xml", "testLOG"]  # no temp files left

    # a rebuild from offset zero gives the same rows and the same file
    with schema.connect(cfg.database_url) as conn:
        before = schema.contents(conn)
    assert service.rebuild(cfg) == len(records)
    with schema.connect(cfg.database_url) as conn:
        after = schema.contents(conn)
    for table in ("audit_entries", "balances", "accounts", "daytrade_triggers", "daytrade_shares"):
        assert after[table] == before[table], table
    assert after == before
    render(cfg, None, dumps, "rebuilt.xml", until=where[-1])
    assert (dumps / "rebuilt.xml").read_bytes() == data


def test_a_refused_name_and_an_unprojected_dumplog_write_nothing(cfg, tmp_path):
    with schema.connect(cfg.database_url) as conn:
        schema.migrate(conn)
    with pytest.raises(ValueError, match=r"'\.\.'"):
        render(cfg, None, tmp_path, "." * 2 + "/escape")
    with pytest.raises(LookupError):
        render(cfg, "alice", tmp_path, "a.xml", until=(0, 99))
    assert os.listdir(tmp_path) == []


def big_history(entries: int) -> list[tuple[str, dict]]:
    """ADDs (2 entries each) and BUYs with a quote hit (3 entries each) of 100 users."""
    out: list[tuple[str, dict]] = []
    made, txn, ts = 0, 0, T0
    cash: dict[str, int] = {}
    while made < entries:
        txn += 1
        ts += 250
        user = f"user{txn % 100:03d}"
        if entries - made in (2, 4) or user not in cash or cash[user] < 2000 * C:
            cash[user] = cash.get(user, 0) + 100_000 * C
            out.append(
                decided("ADD", user, txn, ts, amount=100_000 * C, cash_change=100_000 * C,
                        cash=cash[user])
            )  # fmt: skip
            made += 2
            continue
        cash[user] -= 1234 * C
        out.append(
            decided(
                "BUY", user, txn, ts, symbol="ABC", amount=1234 * C,
                quote=quote("ABC", user, 1234, True, ts // 1000), shares=1, price=1234 * P,
                funds=1234 * C, cash_change=-1234 * C, cash=cash[user], held=0,
            )
        )  # fmt: skip
        made += 3
    return out


def test_a_100k_entry_log_renders_in_bounded_memory(cfg, tmp_path):
    records = big_history(100_000)
    events = [rows.Event(rows.ACCOUNT, 0, n, name, r) for n, (name, r) in enumerate(records)]
    topic = cfg.topic("account.events")
    with schema.connect(cfg.database_url) as conn:
        schema.migrate(conn)
        started = time.perf_counter()
        for start in range(0, len(events), 20_000):  # the projector's default batch
            part = events[start : start + 20_000]
            span = store.Span(topic, 0, start, start + len(part))
            assert store.apply(conn, "bench", [span], rows.fold(part), notify=False) is None
        projected = time.perf_counter() - started
        (count,) = conn.execute("SELECT count(*) FROM audit_entries").fetchone()
    assert count == 100_000

    rss_before = _rss()
    started = time.perf_counter()
    _, path, size = render(cfg, None, tmp_path, "big.xml")
    took = time.perf_counter() - started
    rss_growth = _rss() - rss_before
    tracemalloc.start()  # again, traced (slower): what Python allocated at the peak
    started = time.perf_counter()
    render(cfg, None, tmp_path, "big.xml")
    traced_took = time.perf_counter() - started
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    started = time.perf_counter()
    _, user_path, user_size = render(cfg, "user007", tmp_path, "user007.xml")
    user_took = time.perf_counter() - started
    print(
        f"\nDUMPLOG 100k entries: {size / 1e6:.1f} MB in {took:.2f} s ({traced_took:.2f} s"
        f" traced), peak traced {peak / 1e6:.1f} MB, RSS growth"
        f" {rss_growth / 1e6:.1f} MB; one user ({user_size / 1e6:.2f} MB) in {user_took:.2f} s;"
        f" projected {len(records)} decisions = 100,000 entries in {projected:.2f} s"
        f" ({100_000 / projected:,.0f} entries/s, {len(records) / projected:,.0f} decisions/s)"
    )
    assert peak < 16e6, peak  # the file is ~20 MB: it was never held whole
    assert size > 15e6
    entries = valid_entries(path)
    assert len(entries) == 100_000
    keys = [order_key(e) for e in entries]
    assert keys == sorted(keys)
    assert len(valid_entries(user_path)) == sum(
        1 for e in entries if e.findtext("username") == "user007"
    )


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def test_a_quote_hit_only_decision_is_rendered_as_given(cfg, tmp_path):
    """The quote server's words go into the file as they came (escaped): price, time, key."""
    key = "DfZfqAAAAAAAAAAAXPzMh2Zo8CSRE8OegDLoBA=="
    given = quote("S", "carol", 35661, True, 1_796_475_712_807) | {"cryptokey": key}
    record = decided("QUOTE", "carol", 5, T0, symbol="S", cash=0, quote=given)
    with schema.connect(cfg.database_url) as conn:
        schema.migrate(conn)
        span = store.Span(cfg.topic("account.events"), 0, 0, 1)
        batch = rows.fold([rows.Event(rows.ACCOUNT, 0, 0, A + "DayTradeDecided", record[1])])
        assert store.apply(conn, "g", [span], batch) is None
    _, path, _ = render(cfg, "carol", tmp_path, "c.xml")
    quote_entry = valid_entries(path)[1]
    assert [quote_entry.findtext(f) for f in ("price", "quoteServerTime", "cryptokey")] == [
        "356.61",
        "1796475712807",
        key,
    ]


def test_the_audit_names_an_account_whose_day_trading_does_not_add_up(cfg):
    records = scenario()
    last = next(r for _, r in reversed(records) if r.get("user") == "alice")  # states the end
    last["cash"] += 1  # one unit of cash out of thin air
    last["held"] += 7  # held cash that neither orders nor day trading hold
    with schema.connect(cfg.database_url) as conn:
        schema.migrate(conn)
        span = store.Span(cfg.topic("account.events"), 0, 0, len(records))
        events = [rows.Event(rows.ACCOUNT, 0, n, name, r) for n, (name, r) in enumerate(records)]
        assert store.apply(conn, "g", [span], rows.fold(events)) is None
    passed, lines = audit.audit(cfg.database_url)
    assert not passed
    assert any(line.startswith("cash per account: account alice") for line in lines), lines
    assert any(line.startswith("cash held") and "account alice" in line for line in lines), lines
    assert not any("account bob" in line for line in lines), lines


def course_workload_through_the_real_ledger(path: Path, partitions: int = 2):
    """The course file's commands decided by the real ledger core (testkit's in-memory
    pipeline): quotes from the simulated server's pure price walk (a new second is a server hit,
    the rest of the second the gateway's cache), a tick of every symbol seen every 250 lines at a
    price that sometimes meets triggers, 20 ms between commands (so pending BUYs/SELLs expire).
    Returns the account.events decisions as the projector's Events, per partition in order, the
    number of commands appended, and the ledger partitions' states."""
    import random

    from services.common import workload
    from services.quotes.core import price_cents
    from testkit import records as tr
    from testkit.pipeline import ACCOUNT_EVENTS, LEDGER_COMMANDS, Pipeline, codec, decoded_events

    pipeline = Pipeline(partitions, project=False)
    rng = random.Random(7)
    seen: dict[tuple[str, int], bool] = {}
    symbols: set[str] = set()
    appended, ts = 0, T0
    for n, line in enumerate(workload.parse_lines(path.read_text()), 1):
        if isinstance(line, workload.WorkloadError):
            continue  # the gateway refuses it: nothing appended
        ts += 20_000
        user = line.user or ""
        given = None
        if line.name in ("QUOTE", "BUY", "SELL"):
            second = ts // 1_000_000
            hit = (line.symbol, second) not in seen
            seen[(line.symbol, second)] = True
            cents = price_cents("marketlog", line.symbol, second)
            given = tr.quote(line.symbol, cents * P, user, ts // 1000, hit)
            symbols.add(line.symbol)
        trigger = line.name.endswith("_TRIGGER")
        pipeline.submit(
            *tr.day_trade(
                tr.envelope(f"c{n}", user, ts),
                line.name,
                txn=line.txn or n,
                symbol=line.symbol,
                amount=None if trigger or line.amount is None else line.amount * C,
                trigger=line.amount * P if trigger else None,
                filename=line.filename,
                quote=given,
            )
        )
        appended += 1
        if n % 250 == 0:
            for symbol in sorted(symbols):
                cents = price_cents("marketlog", symbol, ts // 1_000_000)
                cents = max(1, cents * rng.choice([50, 90, 100, 110, 200]) // 100)
                name, tick = tr.quote_tick(
                    tr.envelope(f"t{n}{symbol}", symbol, ts),
                    tr.quote(symbol, cents * P, "ticker", ts // 1000, True),
                )
                value = codec().encode(name, tick)
                for p in range(partitions):  # as the gateway's ticker: to every partition
                    pipeline.log.append(LEDGER_COMMANDS, symbol, value, p)
        if n % 100 == 0:
            pipeline.drain()
    pipeline.drain()
    events = []
    for p in range(partitions):
        events += decoded_events(pipeline.log, (ACCOUNT_EVENTS, p), 0)
    return events, appended, pipeline.ledgers()


def test_a_course_workload_decided_by_the_real_ledger_projects_audits_and_dumps(cfg, tmp_path):
    """The contract between the ledger's decisions and this projection, end to end without
    Kafka: the 10-user course file (9,999 valid lines) through the real ledger core, folded and
    written by the real projector code, audited, dumped and validated."""
    path = Path(__file__).resolve().parents[1] / "data" / "seng468" / "workloads"
    events, appended, ledgers = course_workload_through_the_real_ledger(
        path / "10User_testWorkLoad"
    )
    topic = cfg.topic("account.events")
    with schema.connect(cfg.database_url) as conn:
        schema.migrate(conn)
        for p in sorted({e.partition for e in events}):
            mine = [e for e in events if e.partition == p]
            for start in range(0, len(mine), 3000):
                part = mine[start : start + 3000]
                span = store.Span(topic, p, part[0].offset, part[-1].offset + 1)
                assert store.apply(conn, "g", [span], rows.fold(part)) is None
    passed, lines = audit.audit(cfg.database_url)
    assert passed, lines[:20]
    # the projection holds what the ledger holds: cash, armed triggers, day-trading shares
    accounts = {a: (x.cash, x.held) for led in ledgers for a, x in led.accounts.items()}
    assert (
        dict(
            (a, (avail, held))
            for a, avail, held in query(cfg, "SELECT account_id, available, held FROM balances")
        )
        == accounts
    )
    armed = {
        (user, symbol, side, setting.trigger)
        for led in ledgers
        for user, trader in led.traders.items()
        for side, settings in (("BUY", trader.buy_settings), ("SELL", trader.sell_settings))
        for symbol, setting in settings.items()
        if setting.trigger is not None
    }
    assert (
        set(query(cfg, "SELECT account_id, symbol, side, trigger FROM daytrade_triggers")) == armed
    )
    market: dict[str, int] = {}
    for led in ledgers:
        for symbol, shares in led.market_shares.items():
            market[symbol] = market.get(symbol, 0) + shares
    projected = query(cfg, "SELECT symbol, sum(bought - sold) FROM daytrade_shares GROUP BY symbol")
    assert {sym: n for sym, n in projected if n} == {sym: n for sym, n in market.items() if n}
    _, dumped, _ = render(cfg, None, tmp_path, "testLOG")
    entries = valid_entries(dumped)
    found = counts(entries)
    assert found["userCommand"] == appended
    decided = [e for e in events if e.name == A + "DayTradeDecided"]
    assert found.get("errorEvent", 0) == sum(1 for e in decided if not e.record["ok"])
    keys = [order_key(e) for e in entries]
    assert keys == sorted(keys)
    fired = sum(1 for e in events if e.name == A + "TriggerFired")
    assert found.get("systemEvent", 0) == fired
    print(f"\n10-user workload: {appended} commands, {len(entries)} entries {found}")
