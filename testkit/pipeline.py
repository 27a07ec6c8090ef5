"""The whole exchange in one thread: the real cores over an in-memory log, in any delivery order.

``Pipeline(partitions)`` creates the four topics of infra/topics.toml with that many partitions
and runs over them exactly what the services run:

- the ledger and the matcher: the ``Core`` objects their Kafka shells hand to
  services/common/processor.py (``LedgerCore``, ``MatcherCore``), one partition state per input
  partition, fed the input records' bytes and producing the outputs' bytes. ``Stage`` plays the
  processor loop: a batch is applied, then its outputs, a snapshot when due and the input offset
  are committed together; a crash loses the open batch and rebuilds the partition from its newest
  snapshot plus a silent replay up to the committed offset, as ``Processor._recover`` does;
- the projector: records decoded with the shared codec and folded by services/projector/rows.py
  into in-memory tables (testkit.projection) together with their offsets, as one PostgreSQL
  transaction would store them.

Nothing runs until the caller says which stage consumes which partition next (``step``), or
hands over a seeded ``random.Random`` (``run``, ``drain``): the caller chooses the interleaving.
Gateways are played by ``submit``: a command's Avro record, appended keyed by its envelope key.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from functools import cache

from services.common.codec import Codec
from services.common.config import Settings
from services.common.processor import Core, PartitionState
from services.ledger.service import LedgerCore
from services.matcher.service import MatcherCore
from services.projector import rows

from .log import Log
from .projection import Tables

LEDGER_COMMANDS, MATCH_COMMANDS = "ledger.commands", "match.commands"
ACCOUNT_EVENTS, MARKET_EVENTS = "account.events", "market.events"
TOPICS = (LEDGER_COMMANDS, MATCH_COMMANDS, ACCOUNT_EVENTS, MARKET_EVENTS)
# what a gateway sends to every ledger partition: listings, and day trading's quote ticks
BROADCAST = frozenset(("marketlog.ledger.CreateSymbol", "marketlog.ledger.QuoteTick"))
SOURCES = {ACCOUNT_EVENTS: rows.ACCOUNT, MARKET_EVENTS: rows.MARKET}


@cache
def codec() -> Codec:
    """One compiled codec per process (building one takes a tenth of a second)."""
    return Codec()


@cache
def cores() -> tuple[LedgerCore, MatcherCore]:
    """The services' own cores, with unprefixed topic names (they hold no per-run state)."""
    settings = Settings(kafka="in-memory", topic_prefix="")
    return LedgerCore(settings), MatcherCore(settings)


class Stage:
    """One processor (ledger or matcher) over every partition of its input topic."""

    def __init__(self, core: Core, log: Log, partitions: int, snapshot_every: int = 0) -> None:
        self.core = core
        self.name = core.name
        self.log = log
        self.input = core.input_topic
        self.partitions = partitions
        self.snapshot_every = snapshot_every  # records between snapshots; 0: never
        self.states: list[PartitionState] = [core.fresh(p, partitions) for p in range(partitions)]
        self.committed = [0] * partitions  # next input offset, committed with the outputs
        self.since_snapshot = [0] * partitions
        self.snapshots: list[tuple[int, bytes] | None] = [None] * partitions  # (offset, state)
        self.crashes = 0

    def units(self) -> range:
        return range(self.partitions)

    def pending(self, partition: int) -> int:
        return self.log.end(self.input, partition) - self.committed[partition]

    def step(self, partition: int, records: int, crash_after: int | None = None) -> int:
        """One transaction over up to `records` input records; returns how many it committed.
        With crash_after=k the process dies after applying k of them, before the commit."""
        state, start = self.states[partition], self.committed[partition]
        batch = self.log.read(self.input, partition, start, start + records)
        if crash_after is not None and crash_after < len(batch):
            batch = batch[:crash_after]
        outputs = []
        for offset, record in enumerate(batch, start):
            cause = (self.input, partition, offset)
            outputs += [(out, cause) for out in state.apply(record.value)]
        if crash_after is not None:
            self.crash(partition)
            return 0
        for out, cause in outputs:
            self.log.append(out.topic, out.key, out.value, out.partition, cause)
        self.committed[partition] = end = start + len(batch)
        self.since_snapshot[partition] += len(batch)
        if self.snapshot_every and self.since_snapshot[partition] >= self.snapshot_every:
            self.snapshots[partition] = (end, state.snapshot())
            self.since_snapshot[partition] = 0
        return len(batch)

    def crash(self, partition: int) -> None:
        """Whatever was not committed is lost; the restarted partition is its newest snapshot
        plus a silent replay of the input up to the committed offset."""
        self.crashes += 1
        snapshot = self.snapshots[partition]
        if snapshot is None:
            start, state = 0, self.core.fresh(partition, self.partitions)
        else:
            start, data = snapshot
            state = self.core.restore(partition, self.partitions, data)
        end = self.committed[partition]
        for record in self.log.read(self.input, partition, start, end):
            for _ in state.apply(record.value):
                pass
        self.states[partition] = state
        self.since_snapshot[partition] = end - start


class Projector:
    """The projector over both event topics: one unit per (topic, partition)."""

    name = "projector"

    def __init__(self, log: Log, partitions: int) -> None:
        self.log = log
        self.sources = [(t, p) for t in (ACCOUNT_EVENTS, MARKET_EVENTS) for p in range(partitions)]
        self.applied = dict.fromkeys(self.sources, 0)  # stored with the rows
        self.tables = Tables()
        self.crashes = 0

    def units(self) -> range:
        return range(len(self.sources))

    def pending(self, unit: int) -> int:
        source = self.sources[unit]
        return self.log.end(*source) - self.applied[source]

    def step(self, unit: int, records: int, crash_after: int | None = None) -> int:
        """Fold up to `records` events of one source and store the rows with the new offset;
        a crash before the commit stores nothing (the batch is read again after the restart)."""
        source = self.sources[unit]
        start = self.applied[source]
        events = list(decoded_events(self.log, source, start, start + records))
        if crash_after is not None:
            self.crashes += 1
            return 0
        self.tables.apply(rows.fold(events))
        self.applied[source] = start + len(events)
        return len(events)


def decoded_events(log: Log, source: tuple[str, int], start: int, end: int | None = None):
    """The projector's Events of one partition of account.events or market.events."""
    topic, partition = source
    decode = codec().decode
    for offset, record in enumerate(log.read(topic, partition, start, end), start):
        name, value = decode(record.value)
        yield rows.Event(SOURCES[topic], partition, offset, name, value)


def rebuilt(log: Log, partitions: int) -> Tables:
    """The projection rebuilt from offset zero of every partition, in one batch."""
    tables = Tables()
    sources = [(t, p) for t in (ACCOUNT_EVENTS, MARKET_EVENTS) for p in range(partitions)]
    tables.apply(rows.fold(e for source in sources for e in decoded_events(log, source, 0)))
    return tables


class Pipeline:
    """Gateways' commands in, the ledger, the matcher and (optionally) the projector at work."""

    def __init__(self, partitions: int = 1, *, snapshot_every: int = 0, project: bool = True):
        self.partitions = partitions
        self.log = Log()
        for topic in TOPICS:
            self.log.create(topic, partitions)
        ledger, matcher = cores()
        self.ledger = Stage(ledger, self.log, partitions, snapshot_every)
        self.matcher = Stage(matcher, self.log, partitions, snapshot_every)
        self.projector = Projector(self.log, partitions) if project else None
        self.stages: list[Stage | Projector] = [self.ledger, self.matcher]
        if self.projector is not None:
            self.stages.append(self.projector)

    # -- the gateways -------------------------------------------------------------------------
    def submit(self, name: str, record: dict) -> None:
        """Append a command as a gateway does (services/gateway/commands.py): keyed by its
        envelope's key; CreateSymbol and QuoteTick to every partition (each ledger partition lists
        the symbol, fires its own users' triggers)."""
        value = codec().encode(name, record)
        key = record["envelope"]["key"]
        if name in BROADCAST:
            for partition in range(self.partitions):
                self.log.append(LEDGER_COMMANDS, key, value, partition)
        else:
            self.log.append(LEDGER_COMMANDS, key, value)

    # -- delivery -----------------------------------------------------------------------------
    def work(self) -> list[tuple[Stage | Projector, int]]:
        """Every (stage, partition) with input waiting."""
        return [(s, u) for s in self.stages for u in s.units() if s.pending(u)]

    def quiet(self) -> bool:
        return not self.work()

    def run(self, rng: random.Random, steps: int, max_batch: int = 8) -> int:
        """Up to `steps` transactions, each of a random stage and partition with input waiting
        and a random batch size; returns how many ran (fewer: everything was consumed)."""
        for done in range(steps):
            work = self.work()
            if not work:
                return done
            stage, unit = rng.choice(work)
            stage.step(unit, rng.randint(1, max_batch))
        return steps

    def drain(self, rng: random.Random | None = None, max_batch: int = 1000) -> None:
        """Run until every stage has consumed everything: in a random order with rng, else
        stage by stage in pipeline order."""
        while work := self.work():
            if rng is not None:
                stage, unit = rng.choice(work)
                stage.step(unit, rng.randint(1, max_batch))
            else:
                for stage, unit in work:
                    stage.step(unit, max_batch)

    # -- what the cores hold (tests read their state; the services never do) -------------------
    def ledgers(self) -> list:
        """Each ledger partition's ``services.ledger.state.Ledger``."""
        return [state.ledger for state in self.ledger.states]

    def books(self) -> dict:
        """Every symbol's ``services.matcher.state.Book``, from whichever partition holds it."""
        return {s: b for state in self.matcher.states for s, b in state.matcher.books.items()}

    # -- reading the log ----------------------------------------------------------------------
    def inputs(self, topic: str, partition: int) -> list[tuple[str, dict]]:
        """(record name, record) of every record of one partition, decoded, in offset order."""
        decode = codec().decode
        return [decode(record.value) for record in self.log.read(topic, partition)]

    def records(self, topic: str, since: dict[int, int] | None = None) -> Iterator[tuple]:
        """(partition, offset, record name, record) of a topic in append order, decoded."""
        decode = codec().decode
        for partition, offset, record in self.log.in_order(topic, since):
            yield (partition, offset, *decode(record.value))
