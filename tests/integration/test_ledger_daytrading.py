"""The ledger service on the real broker with day-trading records: DayTrade commands and a
QuoteTick sent to every partition are decided (the triggers fire, partition 0 notes the tick
once); then the service stops, more commands arrive, and the restarted service, restored from
its snapshots, decides them from the same trader state; verify finds the log deterministic."""

from __future__ import annotations

import json
import subprocess
import sys
import zlib

import pytest

from services.common.codec import Codec
from services.ledger import persist
from services.ledger.verify import verify
from testkit import records as r
from testkit.log import partition_for
from tests.integration import backlog
from tests.integration.test_ledger_service import PARTITIONS, append, caught_up
from tests.support import read_all, settings_env, wait_until

pytestmark = pytest.mark.integration
CODEC = Codec()
T0 = 1_700_000_000_000_000
SECOND = 1_000_000
CENT_CASH, CENT_PRICE = 10_000, 100


class Feed:
    """DayTrade and QuoteTick records as (partition, key, value), as the gateway appends them."""

    def __init__(self) -> None:
        self.now = T0
        self.count = 0

    def env(self, key: str, after: int) -> dict:
        self.now += after
        self.count += 1
        return r.envelope(f"dt{self.count}", key, self.now, "gw")

    def trade(self, user: str, command: str, after: int = SECOND, **fields) -> tuple:
        fields.setdefault("txn", self.count + 1)
        name, record = r.day_trade(self.env(user, after), command, **fields)
        return partition_for(user, PARTITIONS), user, CODEC.encode(name, record)

    def tick(self, symbol: str, cents: int) -> list[tuple]:
        name, record = r.quote_tick(self.env(symbol, SECOND), r.quote(symbol, cents * CENT_PRICE))
        value = CODEC.encode(name, record)
        return [(p, symbol, value) for p in range(PARTITIONS)]


def start(settings, out):
    env = settings_env(
        settings, MARKETLOG_LEDGER_BATCH_RECORDS="2", MARKETLOG_LEDGER_SNAPSHOT_RECORDS="2"
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "services.ledger", "serve"], env=env, stdout=out, stderr=out
    )
    backlog.wait_ready(settings.run_dir, "ledger", proc)
    return proc


def run_until_caught_up(settings, log_path) -> str:
    """Run the service until it has committed all its input; its log."""
    with open(log_path, "wb") as out:
        proc = start(settings, out)
        try:
            wait_until(lambda: caught_up(settings), 60, "the ledger to catch up")
        finally:
            proc.terminate()
            proc.wait(30)
    return log_path.read_text()


def decisions(settings) -> list[tuple[str, dict]]:
    out = []
    for record in read_all(settings, settings.topic("account.events")):
        name, value = CODEC.decode(record.value())
        out.append((name.rsplit(".", 1)[1], value))
    return out


def test_day_trading_through_the_service_and_a_restart_from_snapshots(settings, tmp_path):
    feed, quote = Feed(), lambda s, cents, u: r.quote(s, cents * CENT_PRICE, u)
    first = [
        feed.trade("u1", "ADD", amount=1000_00 * CENT_CASH),
        feed.trade("u1", "BUY", symbol="ABC", amount=100_00 * CENT_CASH,
                   quote=quote("ABC", 10_00, "u1")),
        feed.trade("u1", "COMMIT_BUY"),
        feed.trade("u1", "SET_BUY_AMOUNT", symbol="ABC", amount=50_00 * CENT_CASH),
        feed.trade("u1", "SET_BUY_TRIGGER", symbol="ABC", trigger=9_00 * CENT_PRICE),
        feed.trade("u2", "ADD", amount=500_00 * CENT_CASH),
        feed.trade("u2", "SET_BUY_AMOUNT", symbol="ABC", amount=20_00 * CENT_CASH),
        feed.trade("u2", "SET_BUY_TRIGGER", symbol="ABC", trigger=9_50 * CENT_PRICE),
        feed.trade("nobody", "COMMIT_SELL"),
        feed.trade("", "DUMPLOG", filename="./testLOG"),
        *feed.tick("ABC", 9_00),
    ]  # fmt: skip
    append(settings, first)
    run_until_caught_up(settings, tmp_path / "first.log")

    found = decisions(settings)
    decided = [rec for kind, rec in found if kind == "DayTradeDecided"]
    assert len(decided) == 10
    assert [(d["user"], d["ok"], d["code"]) for d in decided if not d["ok"]] == [
        ("nobody", False, "unknown_user")
    ]
    fired = sorted((rec["user"], rec["shares"]) for kind, rec in found if kind == "TriggerFired")
    assert fired == [("u1", 5), ("u2", 2)]
    assert [kind for kind, _ in found].count("QuoteTicked") == 1  # partition 0 only

    # the snapshots hold the traders
    snapshots = read_all(settings, settings.topic("ledger.snapshots"))
    latest = {}
    for record in snapshots:
        kind, value = CODEC.decode(record.value())
        if kind == "marketlog.Snapshot":  # beside them, each transaction's Position
            latest[value["partition"]] = value
    u1 = partition_for("u1", PARTITIONS)
    state = json.loads(zlib.decompress(latest[u1]["state"]))
    assert state["version"] == persist.VERSION
    assert [t[0] for t in state["traders"]] == sorted(
        u for u in ("u1", "u2") if partition_for(u, PARTITIONS) == u1
    )

    # later commands, decided by the restarted service from the restored state
    second = [
        feed.trade("u1", "BUY", symbol="ABC", amount=30_00 * CENT_CASH,
                   quote=quote("ABC", 10_00, "u1")),
        feed.trade("u1", "DISPLAY_SUMMARY", after=61 * SECOND),
        feed.trade("u2", "DISPLAY_SUMMARY"),
    ]  # fmt: skip
    append(settings, second)
    restart = run_until_caught_up(settings, tmp_path / "second.log")
    assert f"partition {u1}: snapshot@" in restart
    assert f"partition {u1}: snapshot@none" not in restart

    found = decisions(settings)
    expired = [rec for kind, rec in found if kind == "PendingExpired"]
    assert [(e["user"], e["side"], e["shares"]) for e in expired] == [("u1", "BUY", 3)]
    summaries = {
        rec["user"]: json.loads(rec["summary"])
        for kind, rec in found
        if kind == "DayTradeDecided" and rec["command"] == "DISPLAY_SUMMARY"
    }
    assert summaries["u1"]["holdings"] == {"ABC": 15} and summaries["u1"]["pending_buys"] == []
    assert summaries["u1"]["cash"] == (1000_00 - 100_00 - 45_00) * CENT_CASH
    assert summaries["u2"]["holdings"] == {"ABC": 2}
    assert summaries["u2"]["cash"] == (500_00 - 18_00) * CENT_CASH  # 2 shares at 9.00

    report = verify(settings)
    assert (report.differences, report.behind) == ([], [])
    assert report.inputs == len(first) + len(second)
