"""`make cluster`'s Kafka (infra/cluster.py): three KRaft brokers, replication 3, SCRAM and ACLs.

One cluster for the module, on its own ports (29100-29105) under .state/test-cluster, wiped first:
topics are replicated three times with two in sync; a client without credentials or with a wrong
password is refused; each service's principal can do what it is granted and nothing else; and the
ledger, as its own principal, decides commands the gateway's principal appends, through the loss
of a broker, every decision exactly once (services.ledger.verify). No password reaches a log.
"""

from __future__ import annotations

import dataclasses
import json
import random
import shutil
import time
from collections.abc import Iterator

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic

from infra.cluster import Cluster
from infra.local import STATE
from services.common.codec import Codec
from services.common.config import Settings
from services.common.kafka import admin_config, consumer_config, producer_config
from services.common.reader import end_offsets
from services.common.topics import load_spec, provision
from services.ledger.verify import verify
from testkit.pipeline import LEDGER_COMMANDS, Pipeline
from testkit.simulation import random_session
from tests.support import ServiceProcs, read_all, wait_until

pytestmark = pytest.mark.integration
PARTITIONS = 4
CODEC = Codec()


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    found = Cluster(STATE / "test-cluster", 29100)
    found.stop()
    shutil.rmtree(found.home, ignore_errors=True)
    began = time.monotonic()
    found.start()
    found.grant()
    provision(found.settings(partitions=PARTITIONS))
    print(f"cluster up, granted and provisioned in {time.monotonic() - began:.1f} s")
    try:
        yield found
    finally:
        found.stop()


def ends(settings: Settings, topic: str) -> dict:
    return end_offsets(settings, [topic], committed=False)


def refused_produce(settings: Settings, topic: str, **extra) -> set[int]:
    """The error codes one record's produce meets: the client's errors until its delivery report
    (which carries the refusal, or a time-out when the connection itself was refused)."""
    errors: list[KafkaError] = []
    reports: list[KafkaError | None] = []
    conf = producer_config(settings, None, **{"message.timeout.ms": 10_000, **extra})
    conf["error_cb"] = errors.append
    producer = Producer(conf)
    producer.produce(topic, b"x", b"k", on_delivery=lambda err, _: reports.append(err))

    def reported() -> bool:
        try:
            producer.poll(0.2)
        except KafkaException as exc:  # a fatal error (the client can never produce) ends it
            reports.append(exc.args[0])
        return bool(reports)

    wait_until(reported, 30, f"the delivery report of a produce to {topic}")
    assert reports[0] is not None, f"{topic}: the record was appended"
    return {e.code() for e in errors + reports}


def test_topics_are_replicated_three_times_with_two_in_sync(cluster):
    settings = cluster.settings(partitions=PARTITIONS)
    assert provision(settings) == []  # idempotent: all there, all as the spec says
    admin = AdminClient({**producer_config(settings), "log_level": 0})
    specs = load_spec(settings)
    meta = admin.list_topics(timeout=10).topics
    for spec in specs:
        assert spec.replication == 3
        partitions = meta[spec.name].partitions.values()
        assert len(partitions) == PARTITIONS
        assert all(len(p.replicas) == 3 for p in partitions), spec.name
    resources = [ConfigResource(ConfigResource.Type.TOPIC, s.name) for s in specs]
    for future in admin.describe_configs(resources).values():
        assert future.result()["min.insync.replicas"].value == "2"
    single = dataclasses.replace(settings, kafka_mode="single")  # the spec's other mode
    assert {s.replication for s in load_spec(single)} == {1}


def test_no_credentials_or_a_wrong_password_is_refused_and_appends_nothing(cluster):
    gateway = cluster.settings("gateway")
    topic = gateway.topic("ledger.commands")
    before = ends(gateway, topic)
    plaintext = dataclasses.replace(gateway, kafka_security="")
    with pytest.raises(KafkaException):  # SASL listeners: a plaintext client gets no metadata
        AdminClient({"bootstrap.servers": plaintext.kafka, "log_level": 0}).list_topics(timeout=5)
    producer = Producer(
        producer_config(plaintext, None, log_level=0, **{"message.timeout.ms": 5000})
    )
    producer.produce(topic, b"x", b"k")
    assert producer.flush(10) == 0  # given up: the record timed out undelivered
    codes = refused_produce(gateway, topic, **{"sasl.password": "not-the-password"})
    assert KafkaError._AUTHENTICATION in codes, codes
    assert ends(gateway, topic) == before


def test_each_principal_can_do_only_what_it_is_granted(cluster):
    gateway, projector = cluster.settings("gateway"), cluster.settings("projector")
    ledger = cluster.settings("ledger")
    topic = gateway.topic
    before = {t: ends(gateway, topic(t)) for t in ("market.events", "account.events")}
    for denied in ("market.events", "account.events", "match.commands", "ledger.snapshots"):
        codes = refused_produce(gateway, topic(denied))
        assert KafkaError.TOPIC_AUTHORIZATION_FAILED in codes, (denied, codes)
    # the projector has no write grant at all: not even an idempotent producer id
    codes = refused_produce(projector, topic("account.events"))
    assert KafkaError.CLUSTER_AUTHORIZATION_FAILED in codes, codes
    assert {t: ends(gateway, topic(t)) for t in before} == before
    # nor may it read, or even see, what is not a decision
    reader = Consumer(consumer_config(projector, None, log_level=0))
    commands = topic("ledger.commands")
    seen = reader.list_topics(commands, 10).topics[commands]
    reader.close()
    assert seen.error.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED
    # a processor cannot take another's transactional id (it would fence that processor)
    thief = Producer(producer_config(ledger, "matcher-0", log_level=0))
    with pytest.raises(KafkaException) as raised:
        thief.init_transactions(20)
    assert raised.value.args[0].code() == KafkaError.TRANSACTIONAL_ID_AUTHORIZATION_FAILED
    # the analytics app writes its candles and state, never a command or a decision
    analytics = cluster.settings("analytics")
    for denied in ("ledger.commands", "account.events", "market.events"):
        codes = refused_produce(analytics, topic(denied))
        assert KafkaError.TOPIC_AUTHORIZATION_FAILED in codes, (denied, codes)
    # and no service creates topics
    admin = AdminClient({**producer_config(gateway), "log_level": 0})
    created = admin.create_topics([NewTopic("gateway.own", 1, 3)])
    with pytest.raises(KafkaException) as raised:
        created["gateway.own"].result()
    assert raised.value.args[0].code() == KafkaError.TOPIC_AUTHORIZATION_FAILED


def session_log() -> list[tuple[int, str, bytes]]:
    pipeline = Pipeline(PARTITIONS, project=False)
    random_session(pipeline, random.Random(20261206), 800, accounts=20)
    return [(p, r.key, r.value) for p, _, r in pipeline.log.in_order(LEDGER_COMMANDS)]


def append(settings: Settings, records) -> None:
    """As the gateway appends: idempotent, acks=all, each record where the session put it."""
    producer = Producer(producer_config(settings))
    for partition, key, value in records:
        producer.produce(settings.topic("ledger.commands"), value, key, partition=partition)
    assert producer.flush(60) == 0


def caught_up(admin: Settings) -> bool:
    topic = admin.topic("ledger.commands")
    group = Consumer(consumer_config(admin, None, **{"group.id": admin.topic("ledger")}))
    try:
        committed = group.committed([TopicPartition(topic, p) for p in range(PARTITIONS)], 10)
        done = end_offsets(admin, [topic])
        return all(c.offset == done[(topic, c.partition)] for c in committed)
    finally:
        group.close()


def coordinator_of(cluster: Cluster, admin: Settings, group: str) -> int:
    """The index in cluster.nodes of the broker that coordinates ``group``."""
    client = AdminClient({**admin_config(admin), "log_level": 0})
    described = client.describe_consumer_groups([group])[group].result(30)
    return next(i for i, n in enumerate(cluster.nodes) if n.node_id == described.coordinator.id)


def supervise(procs: ServiceProcs, name: str, most: int = 2) -> Iterator[int]:
    """The supervisor docs/reliability.md asks for, polled: each next() starts ``name`` again
    if it ended by itself and yields the restarts so far. A processor ends itself when a
    transactional call outlives its bound (the watchdog's exit 70: seen when the lost broker
    was the ledger's transaction and group coordinator) or on a fatal error (FatalError); any
    other exit, or more than ``most`` restarts, fails the test."""
    restarts = 0
    while True:
        code = procs.procs[name].poll()
        if code is not None:
            log = procs.log(name)
            if (code != 70 and "FatalError" not in log) or restarts == most:
                raise AssertionError(f"{name} exited with {code} ({restarts} restarts):\n{log}")
            restarts += 1
            procs.start(name)
        yield restarts


def test_the_ledger_decides_through_the_cluster_and_survives_a_broker_loss(cluster, tmp_path):
    admin = cluster.settings(partitions=PARTITIONS)
    gateway = cluster.settings("gateway", partitions=PARTITIONS)
    ledger = cluster.settings("ledger", partitions=PARTITIONS, run_dir=tmp_path / "run")
    log = session_log()
    half = len(log) // 2
    procs = ServiceProcs(ledger, tmp_path, MARKETLOG_LEDGER_SNAPSHOT_RECORDS="200")
    procs.start("ledger")
    try:
        append(gateway, log[:half])
        wait_until(lambda: caught_up(admin), 60, "the ledger to decide the first half")
        # the broker lost is the one coordinating the ledger's group (the worst one to lose:
        # its offsets move with the coordinator); two of three replicas remain in sync
        lost = coordinator_of(cluster, admin, admin.topic("ledger"))
        cluster.nodes[lost].kill()
        began = time.monotonic()
        append(gateway, log[half:])
        supervisor, restarts = supervise(procs, "ledger"), 0

        def decided() -> bool:
            nonlocal restarts
            restarts = next(supervisor)
            return caught_up(admin)

        wait_until(decided, 150, "the ledger to decide the rest, one broker down")
        print(
            f"second half decided {time.monotonic() - began:.1f} s after the broker's loss,"
            f" the ledger restarted {restarts} times"
        )
        report = verify(admin)  # the pure core over the logged input, against the logged output
        assert (report.differences, report.behind) == ([], [])
        assert report.inputs == len(log) and report.outputs > report.inputs
    finally:
        procs.stop_all()
    cluster.start_node(lost)  # and it comes back
    passwords = [json.loads(p.read_text())["sasl.password"] for p in cluster.secrets.glob("*.json")]
    logs = [n.home / "kafka.log" for n in cluster.nodes] + [tmp_path / "ledger.log"]
    for path in logs:
        text = path.read_text(errors="replace")
        assert not [p for p in passwords if p in text], f"a password in {path}"


def trade(symbol: str, seq: int) -> bytes:
    """A Trade as the matcher writes it (the analytics app reads only these)."""
    envelope = {"command_id": f"t{seq}", "key": symbol, "ts": 1_800_000_000_000_000 + seq * 9_000,
                "reply_to": ""}  # fmt: skip
    return CODEC.encode(
        "marketlog.market.Trade",
        {"envelope": envelope, "seq": seq, "price": 1_000_000 + seq, "qty": 100,
         "maker_order_id": 1, "taker_order_id": 2, "taker_side": "BUY", "maker_remaining": 0,
         "taker_remaining": 0},
    )  # fmt: skip


def test_the_analytics_app_folds_trades_as_its_own_principal(cluster, tmp_path):
    """`make cluster` starts the faust app too: with its SCRAM credentials and only its grants
    (its faust-declared leader topic included) it folds trades into candle updates and state, and
    the projector's principal may read the candles it projects."""
    admin = cluster.settings(partitions=PARTITIONS)
    matcher = cluster.settings("matcher", partitions=PARTITIONS)
    analytics = cluster.settings("analytics", partitions=PARTITIONS, run_dir=tmp_path / "run")
    producer = Producer(producer_config(matcher))
    trades = [(symbol, seq) for symbol in ("AAA", "BBB") for seq in range(1, 26)]
    for symbol, seq in trades:
        producer.produce(matcher.topic("market.events"), trade(symbol, seq), symbol.encode())
    assert producer.flush(60) == 0
    procs = ServiceProcs(analytics, tmp_path)
    procs.start("analytics")
    try:
        candles, state = admin.topic("analytics.candles"), admin.topic("analytics.state")
        wait_until(
            lambda: sum(end_offsets(admin, [candles]).values()) >= 2 * len(trades) + 1,
            90,
            "the app's committed candle updates",
        )
        updates = [CODEC.decode(r.value())[1] for r in read_all(admin, candles, timeout=5)]
        assert sorted((u["envelope"]["key"], u["seq"]) for u in updates if u["interval"] == "1s")\
            == sorted(trades)  # fmt: skip
        heads = [r for r in read_all(admin, state, timeout=5) if r.key().startswith(b"head:")]
        assert len(heads) == len(trades)
    finally:
        procs.stop_all()
    reader = Consumer(consumer_config(cluster.settings("projector"), None, log_level=0))
    try:
        assert reader.list_topics(candles, 10).topics[candles].error is None
    finally:
        reader.close()
