"""The engine: risk, matching and settlement in one deterministic processor, one hop per order.

The split topology runs an order through three exactly-once transactions (the ledger holds, the
matcher matches, the ledger settles), and on this machine a Kafka transaction costs the broker
~2.5 ms of CPU and each hop ~10-20 ms (docs/performance.md, "One hop"). The engine runs the same
two cores — ``LedgerCore`` and ``MatcherCore``, the objects those services hand their processor
loop — behind one loop, as exchange-core's risk and matching stages share one pipeline: a
command from ``ledger.commands`` goes through the ledger; what the ledger sends the matcher is
matched at once; what the matcher sends back is settled at once; only decisions for the world
leave (``account.events``, ``market.events``), in one transaction. ``match.commands`` and the
matcher's settlements stay in memory: the log keeps the input, and the fold over it is the same
on every replay.

Order of work, per input record, stage by stage: every ledger input of the round (the command,
then the settlements the previous round produced), then every matcher input they produced, until
nothing is left. That is the split pipeline with each command carried to quiet before the next
one is read (tests/unit/test_engine.py holds the two equal byte for byte).

The state is one ledger partition and one matcher partition, so ``ledger.commands`` must have one
partition (the fold is over one sequence; interleaving several would depend on timing).
"""

from __future__ import annotations

import struct

from services.common.config import Settings
from services.common.processor import Output
from services.ledger.service import LedgerCore
from services.matcher.service import MatcherCore

_LEN = struct.Struct(">I")


class EnginePartition:
    __slots__ = ("ledger", "matcher", "to_ledger", "to_matcher")

    def __init__(self, ledger, matcher, to_matcher: str, to_ledger: str) -> None:
        self.ledger, self.matcher = ledger, matcher
        self.to_matcher, self.to_ledger = to_matcher, to_ledger

    def apply(self, value: bytes) -> list[Output]:
        out: list[Output] = []
        ledger_in = [value]
        while ledger_in:
            matcher_in = []
            for record in ledger_in:
                for o in self.ledger.apply(record):
                    if o.topic == self.to_matcher:
                        matcher_in.append(o.value)
                    else:
                        out.append(o)
            ledger_in = []
            for record in matcher_in:
                for o in self.matcher.apply(record):
                    if o.topic == self.to_ledger:
                        ledger_in.append(o.value)
                    else:
                        out.append(o)
        return out

    def snapshot(self) -> bytes:
        ledger = self.ledger.snapshot()
        return _LEN.pack(len(ledger)) + ledger + self.matcher.snapshot()


class EngineCore:
    """What the processor loop needs to run the engine."""

    name = "engine"

    def __init__(self, settings: Settings) -> None:
        self.ledger = LedgerCore(settings)
        self.matcher = MatcherCore(settings)
        self.input_topic = self.ledger.input_topic
        self.snapshot_topic = settings.topic("engine.snapshots")
        self.output_topics = (settings.topic("account.events"), settings.topic("market.events"))

    def _partition(self, ledger, matcher) -> EnginePartition:
        return EnginePartition(ledger, matcher, self.matcher.input_topic, self.input_topic)

    @staticmethod
    def _one(partitions: int) -> None:
        if partitions != 1:
            raise ValueError(
                f"the engine folds one sequence: {partitions} partitions of ledger.commands "
                "(run it with MARKETLOG_PARTITIONS=1, or run the ledger and the matcher)"
            )

    def fresh(self, partition: int, partitions: int) -> EnginePartition:
        self._one(partitions)
        return self._partition(self.ledger.fresh(0, 1), self.matcher.fresh(0, 1))

    def restore(self, partition: int, partitions: int, state: bytes) -> EnginePartition:
        self._one(partitions)
        (size,) = _LEN.unpack_from(state)
        ledger, matcher = state[4 : 4 + size], state[4 + size :]
        return self._partition(
            self.ledger.restore(0, 1, ledger), self.matcher.restore(0, 1, matcher)
        )
