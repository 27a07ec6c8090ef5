"""The analytics shell: a faust-streaming app around services/analytics/core.py.

It consumes ``market.events`` (prefixed, raw bytes, decoded with the repo's Avro codec) with
``processing_guarantee="exactly_once"``: for each input partition faust keeps one transactional
producer, and every ``broker_commit_interval`` it commits, in that producer's transaction, the
input offsets, the changelogs of the two state tables (``heads``: a symbol's last seq, clock and
open candles; ``windows``: its closed minutes of the last 24 h) and the candle updates written to
``analytics.candles``. A kill -9 aborts the open transaction (the restarted producer fences it),
faust restores the tables from their committed changelogs (read_committed), and the input is
consumed again from the committed offsets: nothing is lost and nothing counts twice. The seq
check of the core guards the same against an event delivered twice upstream.

One faust detail matters (docs/analytics.md): ``Topic.send`` to a topic the app does not consume
goes out on faust's plain producer, outside any transaction. So updates are sent with
``app.producer.send(..., transactional_id=...)`` on the transactional producer of the input
partition, to the same partition of ``analytics.candles`` (it has as many partitions as
``market.events``, so a symbol's candles stay together and in order).
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

import faust
from confluent_kafka.admin import AdminClient

from services.common.codec import Codec
from services.common.config import Settings

from . import core
from .records import TRADE, encode_update, trade_of

log = logging.getLogger(__name__)

APP = "analytics"
SOURCE, SINK = "market.events", "analytics.candles"
# the state tables' changelogs, compacted like the processors' snapshot topics (infra/topics.toml):
# only closed segments are compacted, so a 10-minute segment keeps a restart's restore short
CHANGELOG = {"segment.ms": "600000", "min.cleanable.dirty.ratio": "0.1"}
COMMIT_SECONDS = 0.25  # how often a transaction commits: most of the trade -> candle latency


def partitions_of(settings: Settings, topic: str, timeout: float = 60.0) -> int:
    """The partition count of a provisioned topic (infra/topics.toml): the tables need it."""
    admin, deadline = AdminClient({"bootstrap.servers": settings.kafka}), time.monotonic() + timeout
    while True:
        meta = admin.list_topics(topic, timeout=10).topics.get(topic)
        if meta is not None and meta.error is None and meta.partitions:
            return len(meta.partitions)
        if time.monotonic() > deadline:
            raise RuntimeError(f"topic {topic} missing: run `python -m infra topics`")
        time.sleep(0.5)


def build(settings: Settings) -> faust.App:
    partitions = partitions_of(settings, settings.topic(SOURCE))
    if partitions_of(settings, settings.topic(SINK)) != partitions:
        raise RuntimeError(f"{SINK} must have as many partitions as {SOURCE} (infra/topics.toml)")
    datadir = settings.run_dir / f"{APP}-{settings.instance}"  # faust's own files (none kept)
    datadir.mkdir(parents=True, exist_ok=True)
    app = faust.App(
        settings.topic_prefix + APP,
        broker=";".join(f"kafka://{hp}" for hp in settings.kafka.split(",")),
        processing_guarantee="exactly_once",
        store="memory://",
        datadir=str(datadir),
        web_enabled=False,
        topic_partitions=partitions,
        broker_commit_interval=COMMIT_SECONDS,
        # a killed instance's partitions move after 10 s (as services/common/kafka.py), not 60
        broker_session_timeout=10.0,
        consumer_auto_offset_reset="earliest",
        key_serializer="raw",  # every key and value here is bytes we encode ourselves
        value_serializer="raw",
    )
    raw = {"key_type": bytes, "value_type": bytes}
    source = app.topic(settings.topic(SOURCE), **raw)
    sink = settings.topic(SINK)
    table = {"partitions": partitions, "extra_topic_configs": CHANGELOG, **raw}
    heads = app.Table("heads", **table)
    windows = app.Table("windows", **table)
    codec = Codec()

    @app.agent(source)
    async def fold(stream):
        async for event in stream.events():
            try:
                await fold_one(event)
            except Exception:
                # faust would ack the event and restart the agent: a trade skipped for good. Stop
                # like a kill -9 instead: the open transaction is aborted, nothing of it counts,
                # and the restarted app meets the same record again (and stops again: loudly).
                log.exception(
                    "cannot fold %s[%d]@%d: stopping",
                    event.message.topic,
                    event.message.partition,
                    event.message.offset,
                )
                logging.shutdown()
                os._exit(70)

    async def fold_one(event) -> None:
        """One market.events record: a Trade's updates, in the input partition's transaction."""
        name, record = codec.decode(event.value)
        if name != TRADE:
            return
        trade = trade_of(record)
        key = trade.symbol.encode()
        found = heads.get(key)
        head = None if found is None else core.load_head(found)
        window = core.load_window(windows.get(key))
        new_head, new_window, updates = core.fold(head, window, trade)
        if not updates:
            return  # seen before: nothing changes
        heads[key] = core.dump_head(new_head)
        if new_window is not window:
            windows[key] = core.dump_window(new_window)
        partition = event.message.partition
        tid = f"{app.conf.id}-{app.assignor.group_for_topic(event.message.topic)}-{partition}"
        for update in updates:
            await app.producer.send(
                sink,
                key,
                encode_update(codec, update),
                partition,
                None,
                None,
                transactional_id=tid,
            )

    @app.on_rebalance_complete.connect
    async def ready(sender, **kwargs) -> None:
        path: Path = settings.mark_ready(APP)
        log.info("analytics live (%s)", path)

    return app


def serve(settings: Settings | None = None) -> None:
    app = build(settings or Settings())
    worker = faust.Worker(app, loglevel="INFO", quiet=True)
    worker.execute_from_commandline()
