"""The analytics shell's two changes to faust's consumer: its fetches paced
(service.pace_fetches), and the records the fold skips and the transaction markers acked where
they are fetched (service.deliver_only).

``market.events`` is written in transactions: each commit leaves a marker at an offset no record
is delivered at. Faust's own gap filling counted the record after each gap twice, so a commit
passed one marker only (the docstring has the numbers); deliver_only acks the markers itself.
Driven here through faust's own fetch loop; ``_new_offset`` is what a commit sends. No broker:
the consumer is built and never started."""

from __future__ import annotations

import asyncio
import types

import faust
from aiokafka.structs import ConsumerRecord
from faust.types import TP

from services.analytics import service
from services.analytics.records import TRADE
from services.common.codec import SAMPLE_DIR, Codec

TOPIC = "market.events"


def test_a_commit_passes_every_marker():
    service.deliver_only(lambda value: True)
    # offsets 3, 7 and 12 are markers: nothing is delivered there
    delivered = [0, 1, 2, 4, 5, 6, 8, 9, 10, 11, 13]
    assert fetched(dict.fromkeys(delivered, b"trade")) == (delivered, 14)


def test_markers_between_single_records_are_passed_too():
    service.deliver_only(lambda value: True)
    assert fetched(dict.fromkeys([5, 7, 9], b"trade")) == ([5, 7, 9], 10)


def test_the_wrapper_is_applied_once():
    service.deliver_only(lambda value: True)
    original = faust.transport.consumer.Consumer.getmany.unfiltered
    service.deliver_only(lambda value: False)
    assert faust.transport.consumer.Consumer.getmany.unfiltered is original  # never stacked


def test_the_apps_consumer_lets_the_broker_hold_its_fetches():
    """Faust gives aiokafka fetch_min_bytes=1 (a fetch per engine commit); pace_fetches makes
    the consumer faust builds for a worker wait for FETCH_WAIT_SECONDS or FETCH_MIN_BYTES."""
    service.pace_fetches()
    service.pace_fetches()  # once is enough, twice changes nothing
    app = faust.App("pace-test", broker="kafka://127.0.0.1:1", web_enabled=False)

    async def built():
        thread = app.consumer._thread
        return thread._create_worker_consumer(app.transport)

    consumer = asyncio.run(built())
    assert consumer._fetch_min_bytes == service.FETCH_MIN_BYTES
    assert consumer._fetch_max_wait_ms == int(service.FETCH_WAIT_SECONDS * 1000)
    assert service.FETCH_MIN_BYTES > 100_000  # not met by a few commits' records


def fetched(records: dict[int, bytes]) -> tuple[list[int], int | None]:
    """Faust's own fetch loop (``_drain_messages``) run over one fetch of these records (offset
    -> value; a missing offset is a transaction marker), each delivered record acked at once as
    the stream acks it: the offsets delivered, and the offset a commit then sends."""
    tp = TP(TOPIC, 0)
    delivered: list[int] = []
    fetches = [
        {
            tp: [
                ConsumerRecord(TOPIC, 0, offset, 0, 0, b"k", value, None, 1, len(value), [])
                for offset, value in sorted(records.items())
            ]
        }
    ]
    stop = types.SimpleNamespace(_stopped=asyncio.Event())

    async def next_records(timeout):
        if fetches:
            return fetches.pop(), None
        stop._stopped.set()  # one fetch, then the loop ends
        return None, None

    async def drain() -> int | None:
        # built in the running loop: faust's services schedule their waits on their own loop
        app = faust.App("deliver-test", broker="kafka://127.0.0.1:1", web_enabled=False)
        consumer = app.consumer
        app.topics._acking_topics.add(TOPIC)  # as subscribing the agent's topic does

        async def on_message(message) -> None:
            delivered.append(message.offset)
            consumer.ack(message)

        consumer._wait_next_records = next_records
        consumer.highwater = lambda tp: max(records) + 1
        consumer.callback = on_message
        await consumer._drain_messages(stop)
        assert not consumer._gap[tp]  # the markers were acked where fetched, not kept as gaps
        return consumer._new_offset(tp)

    committable = asyncio.run(drain())
    return delivered, committable


def test_only_wanted_records_reach_the_stream_and_a_commit_passes_the_rest():
    service.deliver_only(lambda value: value == b"trade")
    # 3 and 9 are markers; 10 to 13 a run the fold skips, ending the fetch
    values = {0: b"o", 1: b"trade", 2: b"o", 4: b"o", 5: b"o", 6: b"trade", 7: b"trade", 8: b"o"}
    values |= {10: b"o", 11: b"o", 12: b"o", 13: b"o"}
    delivered, committable = fetched(values)
    assert delivered == [1, 6, 7]
    assert committable == 14


def test_a_fetch_of_skipped_records_only_is_committed_whole():
    service.deliver_only(lambda value: value == b"trade")
    assert fetched({0: b"o", 2: b"o", 3: b"o", 5: b"o"}) == ([], 6)


def test_wanting_every_record_the_fetch_loop_delivers_them_all():
    """The control: the same loop with the wrapper accepting all is faust's own behaviour."""
    service.deliver_only(lambda value: True)
    assert fetched({0: b"o", 1: b"trade", 3: b"o"}) == ([0, 1, 3], 4)


def test_the_fold_reads_trades_and_unknown_headers_only():
    codec = Codec()
    names = {}
    for sample in sorted(SAMPLE_DIR.glob("*.avro")):
        data = sample.read_bytes()
        names[codec.name_of(data)] = service.folds(codec, data)
    assert names[TRADE] is True
    assert sum(names.values()) == 1  # no other released type
    assert service.folds(codec, b"not a record of ours") is True  # decode then says why
