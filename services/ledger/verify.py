"""The determinism audit: re-run the pure core over the logged input, compare with the output.

``python -m services.ledger verify`` reads every partition of ``ledger.commands`` from offset 0,
applies it to fresh ledgers exactly as the service does (same decoder, same core, same encoder),
and compares the result with ``account.events`` and ``match.commands`` byte for byte.

Outputs are compared per stream: the records of one key that come from one ledger partition, in
order. An account's records all come from its partition; a symbol's ``match.commands`` records come
from every ledger partition, interleaved as their transactions happened to commit, so they are told
apart by order id (``n × P + p + 1``). A logged stream that is a strict prefix of the re-run is
"behind" (the service has not caught up), not a difference.
"""

from __future__ import annotations

import sys
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field

from confluent_kafka.admin import AdminClient

from services.common.config import Settings
from services.common.kafka import admin_config
from services.common.progress import reading
from services.common.reader import read_topic, total_offsets

from .service import LedgerCore

Stream = tuple[str, str, int]  # (topic, key, source ledger partition or -1)


@dataclass
class Report:
    inputs: int = 0
    outputs: int = 0
    behind: list[Stream] = field(default_factory=list)
    differences: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.differences


def records(settings: Settings, topic: str) -> Iterator:
    """Every committed record of every partition of topic, up to its end as of now (with a
    progress bar on a terminal)."""
    return reading(read_topic(settings, topic), topic, lambda: total_offsets(settings, topic))


def stream_of(core: LedgerCore, topic: str, key: str, value: bytes, partitions: int) -> Stream:
    if topic != core.topics["match.commands"]:
        return topic, key, -1
    order_id = core.wire.codec.decode(value)[1]["order_id"]
    return topic, key, (order_id - 1) % partitions


def partition_count(settings: Settings, topic: str) -> int:
    admin = AdminClient(admin_config(settings))
    return len(admin.list_topics(topic, timeout=10).topics[topic].partitions)


def rerun(core: LedgerCore, settings: Settings, partitions: int) -> tuple[int, dict]:
    """(input records, what the core decides over them per stream)."""
    ledgers = {p: core.fresh(p, partitions) for p in range(partitions)}
    expected: dict[Stream, list[bytes]] = defaultdict(list)
    inputs = 0
    for record in records(settings, core.input_topic):
        for out in ledgers[record.partition()].apply(record.value()):
            expected[stream_of(core, out.topic, out.key, out.value, partitions)].append(out.value)
        inputs += 1
    return inputs, expected


def logged(core: LedgerCore, settings: Settings, partitions: int) -> dict[Stream, list[bytes]]:
    actual: dict[Stream, list[bytes]] = defaultdict(list)
    for topic in core.topics.values():
        for record in records(settings, topic):
            key = record.key().decode()
            actual[stream_of(core, topic, key, record.value(), partitions)].append(record.value())
    return actual


def verify(settings: Settings) -> Report:
    core = LedgerCore(settings)
    partitions = partition_count(settings, core.input_topic)
    report = Report()
    report.inputs, expected = rerun(core, settings, partitions)
    actual = logged(core, settings, partitions)
    report.outputs = sum(len(values) for values in actual.values())
    for stream in sorted(expected.keys() | actual.keys()):
        want, got = expected.get(stream, []), actual.get(stream, [])
        if got == want:
            continue
        if len(got) < len(want) and want[: len(got)] == got:
            report.behind.append(stream)
            continue
        at = next((i for i, (a, b) in enumerate(zip(want, got, strict=False)) if a != b), None)
        where = f"record {at}" if at is not None else f"{len(got)} logged, {len(want)} re-run"
        report.differences.append(f"{stream}: differs at {where}")
    return report


def main() -> int:
    report = verify(Settings())
    print(f"{report.inputs} input records, {report.outputs} logged outputs")
    for stream in report.behind:
        print(f"behind: {stream}")
    for line in report.differences:
        print(f"DIFFERENT: {line}")
    print("ok" if report.ok else f"{len(report.differences)} streams differ")
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
