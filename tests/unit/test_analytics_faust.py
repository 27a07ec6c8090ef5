"""The analytics shell's two changes to faust's consumer: its gap tracking mended
(service.mend_gap_tracking) and its fetches paced (service.pace_fetches).

``market.events`` is written in transactions: each commit leaves a marker at an offset no record
is delivered at. Faust fills such gaps so its committed offset can pass them; unmended, faust
counted the record after each gap twice and a commit passed one marker only (the docstring has
the numbers). Driven here as faust's fetch loop drives it: ``_add_gap(tp, r_offset + 1, offset)``
for a record that follows a gap, then the record's ack; ``_new_offset`` is what a commit sends.
No broker: the consumer is built and never started."""

from __future__ import annotations

import asyncio

import faust
from faust.types import TP

from services.analytics import service

TOPIC = "market.events"


def committable(delivered: list[int]) -> int | None:
    """The offset a commit sends after these records were delivered and acked, in order."""
    app = faust.App("gaps-test", broker="kafka://127.0.0.1:1", web_enabled=False)
    consumer = app.consumer
    tp = TP(TOPIC, 0)

    async def deliver() -> None:
        last = None
        for offset in delivered:
            if last is not None and offset - last > 1:
                await consumer._add_gap(tp, last + 1, offset)  # as _drain_messages calls it
            consumer._acked[tp].append(offset)  # what Consumer.ack records
            consumer._acked_index[tp].add(offset)
            last = offset

    asyncio.run(deliver())
    return consumer._new_offset(tp)


def test_a_commit_passes_every_marker_once_the_gaps_are_mended():
    service.mend_gap_tracking()
    # offsets 3, 7 and 12 are markers: nothing is delivered there
    delivered = [0, 1, 2, 4, 5, 6, 8, 9, 10, 11, 13]
    assert committable(delivered) == 14


def test_markers_between_single_records_are_passed_too():
    service.mend_gap_tracking()
    assert committable([5, 7, 9]) == 10


def test_the_mend_is_applied_once():
    service.mend_gap_tracking()
    mended = faust.transport.consumer.Consumer._add_gap
    service.mend_gap_tracking()
    assert faust.transport.consumer.Consumer._add_gap is mended


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
