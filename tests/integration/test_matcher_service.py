"""The matcher on the real broker: kill -9 mid-stream, then every seq exactly once and the
whole output equal to an offline replay of the input log through the same core."""

from __future__ import annotations

import random
import subprocess
import sys
import time
from collections import defaultdict

import pytest
from confluent_kafka import Producer

from services.common.codec import Codec
from services.common.kafka import PARTITIONER
from services.matcher.service import MatcherCore
from services.matcher.verify import verify, verify_partition
from tests.integration import backlog
from tests.support import read_all, run_cli, settings_env, wait_until
from tests.unit.reference_book import random_stream

pytestmark = pytest.mark.integration
CODEC = Codec()
SYMBOLS = ["AAPL", "MSFT", "X", "IBM", "TSLA", "GE", "F", "KO"]


def match_commands(seed: int, per_symbol: int) -> list[tuple[str, bytes]]:
    """(symbol, Avro value) for random streams of every symbol, interleaved at random."""
    rng = random.Random(seed)
    streams = {s: random_stream(seed + i, per_symbol) for i, s in enumerate(SYMBOLS)}
    pending = {s: 0 for s in SYMBOLS}
    out, n = [], 0
    while pending:
        symbol = rng.choice(sorted(pending))
        command = streams[symbol][pending[symbol]]
        pending[symbol] += 1
        if pending[symbol] == per_symbol:
            del pending[symbol]
        out.append((symbol, encode(symbol, command, n)))
        n += 1
    return out


def encode(symbol: str, command: tuple, n: int) -> bytes:
    op, ts, oid = command[:3]
    env = {"command_id": f"c{n}", "key": symbol, "ts": ts, "reply_to": f"gw-{n % 2}"}
    account = f"acct-{oid % 3}"
    if op == "place":
        _, _, _, account, side, price, qty, tif, exp, post, stp, budget, lot = command
        rec = {"envelope": env, "account": account, "order_id": oid, "side": side,
               "price": price, "qty": qty, "tif": tif, "expire_ts": exp, "post_only": post,
               "stp": stp, "budget": budget, "lot": lot}  # fmt: skip
        return CODEC.encode("marketlog.match.PlaceOrder", rec)
    if op == "cancel":
        rec = {"envelope": env, "account": account, "order_id": oid}
        return CODEC.encode("marketlog.match.CancelOrder", rec)
    if op == "reduce":
        rec = {"envelope": env, "account": account, "order_id": oid, "qty": command[4]}
        return CODEC.encode("marketlog.match.ReduceOrder", rec)
    rec = {"envelope": env, "account": account, "order_id": oid, "new_order_id": command[4],
           "price": command[5], "qty": command[6]}  # fmt: skip
    return CODEC.encode("marketlog.match.ReplaceOrder", rec)


def produce(settings, commands, *, pause_every: int, pause: float) -> None:
    producer = Producer({"bootstrap.servers": settings.kafka, "partitioner": PARTITIONER})
    topic = settings.topic("match.commands")
    for i, (symbol, value) in enumerate(commands):
        producer.produce(topic, value, symbol)
        if pause_every and i % pause_every == 0:
            producer.flush()
            time.sleep(pause)
    producer.produce(topic, b"\x00garbage that is not Avro", "X")  # skipped, not fatal
    producer.flush()


def stream_of(topic: str, key: str, value: bytes) -> tuple[str, str, str]:
    """Outputs are ordered per input partition: per (topic, key, symbol) they are in order."""
    rec = CODEC.decode(value)[1]
    return (topic, key, rec.get("symbol") or rec["envelope"]["key"])


def offline_replay(settings) -> dict[tuple[str, str, str], list[bytes]]:
    """The input log through a fresh core per partition: outputs per stream, in order."""
    core = MatcherCore(settings, CODEC)
    states, out = {}, defaultdict(list)
    for record in read_all(settings, core.input_topic):
        p = record.partition()
        state = states.setdefault(p, core.fresh(p, 4))
        for o in state.apply(record.value()):
            out[stream_of(o.topic, o.key, o.value)].append(o.value)
    return dict(out)


def logged(settings) -> dict[tuple[str, str, str], list[bytes]]:
    out = defaultdict(list)
    for role in ("market.events", "ledger.commands"):
        topic = settings.topic(role)
        for record in read_all(settings, topic):
            out[stream_of(topic, record.key().decode(), record.value())].append(record.value())
    return dict(out)


def count(settings) -> int:
    roles = ("market.events", "ledger.commands")
    return sum(len(read_all(settings, settings.topic(role))) for role in roles)


def assert_gap_free(settings) -> int:
    seqs = defaultdict(list)
    for record in read_all(settings, settings.topic("market.events")):
        name, rec = CODEC.decode(record.value())
        if name != "marketlog.market.BookChecksum":  # repeats the seq it reflects
            seqs[record.key().decode()].append(rec["seq"])
    for symbol, got in seqs.items():
        assert got == list(range(1, len(got) + 1)), f"{symbol}: seqs not 1..n exactly once"
    return sum(len(v) for v in seqs.values())


def append(settings, commands) -> set[int]:
    """Append (symbol, value) commands to match.commands; the partitions they went to."""
    producer = Producer({"bootstrap.servers": settings.kafka, "partitioner": PARTITIONER})
    topic, written = settings.topic("match.commands"), set()

    def delivered(error, record) -> None:
        assert error is None, error
        written.add(record.partition())

    for symbol, value in commands:
        producer.produce(topic, value, symbol, on_delivery=delivered)
    assert producer.flush(30) == 0
    return written


def test_kill_9_while_commands_flow_keeps_the_output_exact(settings):
    """Two instances share the partitions; one of them is killed four times mid-stream: each
    time once it has committed part of its input and while commands it has not read are waiting
    on its partitions (it is paused, then given more; see tests/integration/backlog.py)."""
    rng = random.Random(20261121)
    commands, size = match_commands(7, 1500), 1000
    chunks = iter([commands[i : i + size] for i in range(0, len(commands), size)])
    group, topic = settings.topic_prefix + "matcher", settings.topic("match.commands")
    everything = backlog.partitions_of(settings.kafka, [topic])

    def start(instance: str):
        env = settings_env(
            settings,
            MARKETLOG_MATCHER_BATCH_RECORDS="300",
            MARKETLOG_MATCHER_SNAPSHOT_RECORDS="1500",
            MARKETLOG_MATCHER_SNAPSHOT_SECONDS="2",
        )
        env["MARKETLOG_INSTANCE"] = instance  # its own transactional id and group member id
        return subprocess.Popen(
            [sys.executable, "-m", "services.matcher", "serve"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def owned(instance: str) -> set[tuple[str, int]]:
        return backlog.assigned(settings.kafka, group, f"{group}-{instance}")

    def settled() -> bool:
        """Both instances live, each with its share of the partitions."""
        mine, theirs = owned("0"), owned("1")
        return bool(mine) and bool(theirs) and mine | theirs == everything

    def progress_of(partitions: set) -> int:
        done = backlog.committed(settings.kafka, group, topic)
        return sum(done[key] for key in partitions)

    def feed(partitions: set) -> None:
        """At least a chunk, and until some of it lands on these partitions."""
        wanted = {p for _, p in partitions}
        while not append(settings, next(chunks)) & wanted:
            pass

    append(settings, next(chunks))
    kills = []
    procs = {instance: start(instance) for instance in ("0", "1")}
    try:
        for instance, proc in procs.items():
            backlog.wait_ready(settings.run_dir, "matcher", proc, instance)
        for _ in range(4):
            wait_until(settled, 60, "both instances to own partitions")
            victim = rng.choice(sorted(procs))
            mine = owned(victim)
            kills.append(
                backlog.kill_with_unread_input(
                    settings.kafka,
                    procs[victim],
                    progress=lambda mine=mine: progress_of(mine),
                    inputs=lambda victim=victim: owned(victim),
                    feed=feed,
                )
            )
            procs[victim] = start(victim)
            backlog.wait_ready(settings.run_dir, "matcher", procs[victim], victim)
        produce(settings, [c for chunk in chunks for c in chunk], pause_every=0, pause=0)
        expected = offline_replay(settings)
        total = sum(len(v) for v in expected.values())
        wait_until(lambda: count(settings) >= total, 60, "every output", every=1.0)
    finally:
        for proc in procs.values():
            proc.terminate()
        for proc in procs.values():
            proc.wait(30)
    assert len(kills) == 4
    print("kills:", kills)
    assert all(k.progress > 0 and k.unread > 0 for k in kills), kills
    assert logged(settings) == expected
    assert assert_gap_free(settings) > 5_000
    # the determinism audit agrees: from offset 0, and from a snapshot into the middle
    assert [r.problems for r in verify(settings, [0, 1, 2, 3])] == [[], [], [], []]
    ends = defaultdict(int)
    for record in read_all(settings, settings.topic("match.commands")):
        ends[record.partition()] = record.offset() + 1
    decoded = [
        CODEC.decode(r.value()) for r in read_all(settings, settings.topic("matcher.snapshots"))
    ]
    snaps = [snap for kind, snap in decoded if kind == "marketlog.Snapshot"]
    snap = next(s for s in snaps if 0 < s["offset"] < ends[s["partition"]] - 10)
    report = verify_partition(settings, snap["partition"], snap["offset"] + 7)
    assert report.snapshot == snap["offset"] and report.problems == [] and report.outputs > 0


def test_verify_reports_a_tampered_log(settings):
    commands = match_commands(3, 150)
    produce(settings, commands, pause_every=0, pause=0)
    env = settings_env(settings, MARKETLOG_MATCHER_SNAPSHOT_RECORDS="100")
    proc = subprocess.Popen(
        [sys.executable, "-m", "services.matcher", "serve"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        expected = offline_replay(settings)
        total = sum(len(v) for v in expected.values())
        wait_until(lambda: count(settings) >= total, 60, "every output", every=1.0)
    finally:
        proc.terminate()
        proc.wait(30)
    # a forged trade on the tape: the audit of that symbol's partition must fail
    producer = Producer({"bootstrap.servers": settings.kafka, "partitioner": PARTITIONER})
    forged = read_all(settings, settings.topic("market.events"))[0]
    producer.produce(settings.topic("market.events"), forged.value(), forged.key())
    producer.flush()
    cli = run_cli(settings, "services.matcher", "verify", timeout=120)
    assert cli.returncode == 1, cli.stdout + cli.stderr
    assert "logged 2 times" in cli.stdout
