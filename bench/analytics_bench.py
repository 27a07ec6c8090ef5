"""The analytics app (docs/analytics.md): trades/s it folds, CPU per trade, trade -> candle latency.

1. backlog: TRADES Trade records over SYMBOLS symbols are appended to market.events (committed,
   in transactions of a few hundred) before `python -m services.analytics serve` starts; from its
   ready file to the moment its committed input offsets reach the end, the wall time gives
   trades/s and the process's CPU seconds give µs per trade (start-up and table restore
   excluded).
2. latency: with the app idle, one trade at a time is appended in its own transaction; the time
   from that commit to its first candle update readable on analytics.candles (read_committed) is
   the trade -> candle latency (most of it is the app's transaction interval, COMMIT_SECONDS).
3. core: the same per-trade work without faust (decode, fold, state to bytes and back, encode the
   two updates) in this process, for the share of the CPU that is faust's.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time

from confluent_kafka import Consumer, Producer, TopicPartition

from bench.cpu import cpu_seconds
from bench.env import BenchEnv
from infra.stack import settings_env
from services.analytics import core
from services.analytics.records import encode_update, trade_of
from services.analytics.service import APP, COMMIT_SECONDS
from services.common.codec import Codec
from services.common.config import Settings
from services.common.reader import end_of

TRADES, QUICK_TRADES = 40_000, 4_000
SYMBOLS = 20
PROBES, QUICK_PROBES = 40, 5
TS0 = 1_800_000_000_000_000
CODEC = Codec()


def trade(symbol: str, seq: int) -> bytes:
    env = {"command_id": f"c{seq}", "key": symbol, "ts": TS0 + seq * 7_000, "reply_to": ""}
    return CODEC.encode(
        "marketlog.market.Trade",
        {"envelope": env, "seq": seq, "price": 1_000_000 + seq % 97, "qty": 100 + seq % 13,
         "maker_order_id": 1, "taker_order_id": 2, "taker_side": "BUY", "maker_remaining": 0,
         "taker_remaining": 0},
    )  # fmt: skip


def committed_total(settings: Settings, topic: str) -> int:
    consumer = Consumer(
        {"bootstrap.servers": settings.kafka, "group.id": settings.topic_prefix + APP}
    )
    try:
        parts = consumer.list_topics(topic, 10).topics[topic].partitions
        found = consumer.committed([TopicPartition(topic, p) for p in parts], 10)
        return sum(max(tp.offset, 0) for tp in found)
    finally:
        consumer.close()


def core_us_per_trade(n: int) -> float:
    values = [trade("S", seq) for seq in range(1, n + 1)]
    heads: dict[bytes, bytes] = {}
    windows: dict[bytes, bytes] = {}
    started = time.process_time()
    for value in values:
        t = trade_of(CODEC.decode(value)[1])
        key = t.symbol.encode()
        found = heads.get(key)
        window = core.load_window(windows.get(key))
        head, new_window, updates = core.fold(
            None if found is None else core.load_head(found), window, t
        )
        heads[key] = core.dump_head(head)
        if new_window is not window:
            windows[key] = core.dump_window(new_window)
        for update in updates:
            encode_update(CODEC, update)
    return (time.process_time() - started) / n * 1e6


def run(env: BenchEnv) -> dict:
    trades = QUICK_TRADES if env.quick else TRADES
    settings = env.settings()
    source, sink = settings.topic("market.events"), settings.topic("analytics.candles")
    producer = Producer(
        {"bootstrap.servers": settings.kafka, "transactional.id": settings.topic_prefix + "feed"}
    )
    producer.init_transactions()
    per_symbol = trades // SYMBOLS
    producer.begin_transaction()
    for seq in range(1, per_symbol + 1):
        for s in range(SYMBOLS):
            producer.produce(source, trade(f"S{s}", seq), f"S{s}".encode())
        if seq % 20 == 0:
            producer.commit_transaction()
            producer.begin_transaction()
    producer.commit_transaction()
    total = per_symbol * SYMBOLS
    settings.run_dir.mkdir(parents=True, exist_ok=True)
    log = open(settings.run_dir / "analytics.log", "wb")  # noqa: SIM115 - the child writes it
    proc = subprocess.Popen(
        [sys.executable, "-m", "services.analytics", "serve"],
        env=settings_env(settings),
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        ready = settings.run_dir / f"{APP}-0.ready"
        deadline = time.monotonic() + 120
        while not ready.exists():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the analytics app did not go live")
            time.sleep(0.05)
        cpu0, wall0 = cpu_seconds(proc.pid), time.monotonic()
        while committed_total(settings, source) < total:
            if proc.poll() is not None:
                raise RuntimeError("the analytics app exited")
            time.sleep(0.1)
        cpu1, wall1 = cpu_seconds(proc.pid), time.monotonic()
        latencies = probe_latency(settings, producer, sink, per_symbol, env)
    finally:
        proc.terminate()
        proc.wait(30)
    return {
        "backlog": {
            "trades": total,
            "symbols": SYMBOLS,
            "trades_per_s": round(total / (wall1 - wall0)),
            "cpu_us_per_trade": round((cpu1 - cpu0) / total * 1e6),
        },
        "latency_ms": {
            "probes": len(latencies),
            "p50": round(statistics.median(latencies), 1),
            "max": round(max(latencies), 1),
            "commit_interval_ms": COMMIT_SECONDS * 1000,
        },
        "core_us_per_trade": round(core_us_per_trade(min(total, 20_000)), 1),
    }


def probe_latency(settings, producer, sink: str, after: int, env: BenchEnv) -> list[float]:
    consumer = Consumer(
        {"bootstrap.servers": settings.kafka, "group.id": settings.topic_prefix + "probe",
         "isolation.level": "read_committed", "enable.auto.commit": False}
    )  # fmt: skip
    parts = consumer.list_topics(sink, 10).topics[sink].partitions
    ends = [end_of(consumer, TopicPartition(sink, p)) for p in parts]
    consumer.assign([TopicPartition(sink, p, end) for p, end in zip(parts, ends, strict=True)])
    out = []
    for i in range(QUICK_PROBES if env.quick else PROBES):
        seq = after + 1 + i
        producer.begin_transaction()
        producer.produce(settings.topic("market.events"), trade("S0", seq), b"S0")
        producer.commit_transaction()
        sent = time.monotonic()
        deadline = sent + 30
        while time.monotonic() < deadline:
            message = consumer.poll(1)
            if message is None or message.error() is not None:
                continue
            if CODEC.decode(message.value())[1]["seq"] == seq:
                out.append((time.monotonic() - sent) * 1000)
                break
        time.sleep(0.3)  # idle again: the next probe starts between two commits at random
    consumer.close()
    return out


def summary(figures: dict) -> str:
    b, lat = figures["backlog"], figures["latency_ms"]
    return (
        f"- analytics backlog: {b['trades_per_s']:,} trades/s folded ({b['trades']:,} trades,"
        f" {b['symbols']} symbols), {b['cpu_us_per_trade']} µs CPU per trade (the core with the"
        f" codec alone: {figures['core_us_per_trade']} µs)\n"
        f"- trade -> candle update readable on analytics.candles: p50 {lat['p50']} ms,"
        f" max {lat['max']} ms ({lat['probes']} probes, commits every"
        f" {lat['commit_interval_ms']:.0f} ms)"
    )
