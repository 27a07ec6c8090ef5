"""`python -m services.matcher verify`: the determinism audit.

Re-runs the pure core over a logged input range of match.commands and compares what it produces
with what the matcher logged, byte for byte. How a logged output is tied to its input (see
docs/matcher.md, "verify"): outputs carry no input offset, but each has an identity that is unique
in the log when the matcher ran exactly once:

- market.* records: (symbol, seq), a BookChecksum (which repeats the seq it reflects):
  ("checksum", symbol, seq); Fill: (symbol, seq, role); ledger OrderReduced and OrderClosed
  with a seq: (symbol, seq); a refused command (MatchRejected, OrderClosed REJECTED):
  (symbol, order_id, command_id).

For each re-produced output the log must hold exactly one record with its identity, with the same
topic, key and bytes, and per (topic, key) they must appear in the re-produced order. Records of the
same symbols inside the range that were not re-produced (an extra seq, an extra refusal for a
command of the range) are differences too, and so is any seq logged twice.

The state at the range's start comes from the newest snapshot at or before it (or a fresh state
at offset 0), then a silent replay up to the start, exactly as the service recovers.
"""

from __future__ import annotations

import sys
import zlib
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field

from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

from services.common.codec import Codec, CodecError
from services.common.config import Settings
from services.common.kafka import consumer_config
from services.common.progress import reading
from services.common.reader import end_offsets, partitions_of, read_to_end

from .service import ALL_OUTPUTS, CHECKSUM, MatcherCore, MatcherPartition


@dataclass
class Logged:
    topic: str
    partition: int
    offset: int
    key: str
    value: bytes


@dataclass
class Report:
    partition: int
    start: int
    end: int
    snapshot: int | None
    outputs: int = 0
    problems: list[str] = field(default_factory=list)


def read_partition(
    settings: Settings, topic: str, partition: int, start: int = 0, end: int | None = None
) -> Iterator:
    """Committed records of one partition from start up to end (or its end as of now), with a
    progress bar on a terminal."""
    records = read_to_end(settings, {(topic, partition): start or OFFSET_BEGINNING}, stop=end)

    def total() -> int:
        last = end if end is not None else end_offsets(settings, [topic])[(topic, partition)]
        return max(last - start, 0)

    return reading(records, f"{topic}[{partition}]", total)


def committed_offset(settings: Settings, core: MatcherCore, partition: int) -> int | None:
    """The matcher group's committed input offset: its outputs before it are in the log."""
    group = settings.topic_prefix + core.name  # only read its offsets: never join the group
    reader = Consumer(consumer_config(settings, None, **{"group.id": group}))
    try:
        tp = reader.committed([TopicPartition(core.input_topic, partition)], 30)[0]
    finally:
        reader.close()
    return tp.offset if tp.offset >= 0 else None


def identity(codec: Codec, value: bytes) -> tuple | None:
    """What names a matcher output uniquely in the log (None: not a matcher output)."""
    name, rec = codec.decode(value)
    if name not in ALL_OUTPUTS:
        return None
    if name == CHECKSUM:
        return ("checksum", rec["envelope"]["key"], rec["seq"])
    if name.startswith("marketlog.market."):
        return ("market", rec["envelope"]["key"], rec["seq"])
    if name == "marketlog.ledger.Fill":
        return ("fill", rec["symbol"], rec["seq"], rec["role"])
    if rec.get("seq") is not None:
        return ("settled", rec["symbol"], rec["seq"])
    return ("refused", rec["symbol"], rec["order_id"], rec["envelope"]["command_id"])


def start_state(
    settings: Settings, core: MatcherCore, partition: int, start: int
) -> tuple[MatcherPartition, int, int | None]:
    """(state, its input offset, the snapshot offset used) for a range starting at start."""
    best = None
    if start > 0:
        for record in read_partition(settings, core.snapshot_topic, partition):
            kind, snap = core.codec.decode(record.value())
            if kind != "marketlog.Snapshot":  # a Position (services/common/processor.py)
                continue
            usable = snap["partition"] == partition and snap["offset"] <= start
            if usable and (best is None or snap["offset"] >= best["offset"]):
                best = snap
    if best is None:
        return core.fresh(partition, 0), 0, None
    state = core.restore(partition, 0, zlib.decompress(best["state"]))
    return state, best["offset"], best["offset"]


def logged_outputs(settings: Settings, codec: Codec, symbols: set[str]) -> dict[tuple, list]:
    """Every matcher output of these symbols on market.events and ledger.commands, by identity."""
    found: dict[tuple, list[Logged]] = defaultdict(list)
    headers = {codec.fingerprint(name) for name in ALL_OUTPUTS}
    for role in ("market.events", "ledger.commands"):
        topic = settings.topic(role)
        for p in partitions_of(settings, topic):
            for record in read_partition(settings, topic, p):
                value = record.value()
                if value[2:10] not in headers:
                    continue
                ident = identity(codec, value)
                if ident is not None and ident[1] in symbols:
                    key = record.key().decode()
                    found[ident].append(Logged(topic, p, record.offset(), key, value))
    return found


@dataclass
class _Rerun:
    report: Report
    expected: list[tuple[str, str, bytes]]
    commands: set[tuple[str, str]]
    symbols: set[str]


def _rerun(settings: Settings, core: MatcherCore, partition: int, start: int, end: int | None):
    if end is None:  # a live matcher's newest outputs may not be committed yet: stop before them
        end = committed_offset(settings, core, partition)
    state, offset, snap = start_state(settings, core, partition, start)
    expected: list[tuple[str, str, bytes]] = []
    commands: set[tuple[str, str]] = set()
    last = start
    for record in read_partition(settings, core.input_topic, partition, offset, end):
        outputs = state.apply(record.value())
        if record.offset() >= start:
            expected.extend((o.topic, o.key, o.value) for o in outputs)
            last = record.offset() + 1
            env = _envelope(state, record.value())
            if env is not None:
                commands.add((env["key"], env["command_id"]))
    report = Report(partition, start, last if end is None else end, snap, len(expected))
    symbols = set(state.matcher.books) | {symbol for symbol, _ in commands}
    return _Rerun(report, expected, commands, symbols)


def verify(
    settings: Settings, partitions: list[int], start: int = 0, end: int | None = None
) -> list[Report]:
    """Re-run each input partition's range and compare with the log (read once for all)."""
    core = MatcherCore(settings)
    codec = core.codec
    reruns = [_rerun(settings, core, p, start, end) for p in partitions]
    logged = logged_outputs(settings, codec, set().union(*(r.symbols for r in reruns)))
    for r in reruns:
        mine = {ident: entries for ident, entries in logged.items() if ident[1] in r.symbols}
        _compare(codec, r.expected, mine, r.commands, r.report)
    return [r.report for r in reruns]


def verify_partition(
    settings: Settings, partition: int, start: int = 0, end: int | None = None
) -> Report:
    return verify(settings, [partition], start, end)[0]


def _envelope(state: MatcherPartition, value: bytes) -> dict | None:
    try:
        return state.codec.decode(value)[1].get("envelope")
    except CodecError:
        return None


def _compare(codec: Codec, expected: list, logged: dict, commands: set, report: Report) -> None:
    problems = report.problems
    seen: dict[tuple, None] = {}
    last_offset: dict[tuple[str, str], int] = {}
    spans: dict[str, list[int]] = {}
    for topic, key, value in expected:
        ident = identity(codec, value)
        seen[ident] = None
        if ident[0] != "refused":
            span = spans.setdefault(ident[1], [ident[2], ident[2]])
            span[0], span[1] = min(span[0], ident[2]), max(span[1], ident[2])
        matches = logged.get(ident, [])
        if not matches:
            problems.append(f"missing from the log: {ident}")
            continue
        if len(matches) > 1 and ident[0] != "refused":
            problems.append(f"logged {len(matches)} times: {ident}")
        hit = next((m for m in matches if (m.topic, m.key, m.value) == (topic, key, value)), None)
        if hit is None:
            m = matches[0]
            problems.append(
                f"differs: {ident}: logged {m.topic}[{m.partition}]@{m.offset} key {m.key!r}, "
                f"{codec.decode(m.value)[1]} != re-run key {key!r}, {codec.decode(value)[1]}"
            )
            continue
        stream = (topic, key)
        if last_offset.get(stream, -1) >= hit.offset:
            problems.append(f"out of order on {topic} key {key!r}: {ident}")
        last_offset[stream] = hit.offset
    for ident, entries in logged.items():
        if ident in seen:
            continue
        if ident[0] == "refused":
            extra = (ident[1], ident[3]) in commands
        else:
            span = spans.get(ident[1])
            extra = span is not None and span[0] <= ident[2] <= span[1]
        if extra:
            problems.append(f"logged but not re-produced: {ident} ({len(entries)} record(s))")


def main(partition: int | None, start: int, end: int | None) -> int:
    settings = Settings()
    topic = settings.topic("match.commands")
    chosen = [partition] if partition is not None else partitions_of(settings, topic)
    failed = False
    for report in verify(settings, chosen, start, end):
        source = "fresh state" if report.snapshot is None else f"snapshot@{report.snapshot}"
        status = "OK" if not report.problems else f"{len(report.problems)} DIFFERENCES"
        print(
            f"partition {report.partition}: input [{report.start}, {report.end}) from {source}: "
            f"{report.outputs} outputs re-produced: {status}"
        )
        for problem in report.problems[:50]:
            print(f"  {problem}")
        failed = failed or bool(report.problems)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(None, 0, None))
