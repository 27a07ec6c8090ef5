"""The ledger's Kafka shell: the pure core plugged into the exactly-once processor loop.

Input ``ledger.commands`` (key account); decisions to ``account.events`` (key account, or symbol
for SymbolCreated) and held orders to ``match.commands`` (key symbol); snapshots of each
partition's state to ``ledger.snapshots``. The loop says how many partitions there are.
Records go through the shared compiled codec (``Wire`` below is the ledger's glue to it): the core's
typed decisions become Avro here, and only here (``as_record`` gives one as the codec's dict).
"""

from __future__ import annotations

import logging

from services.common.codec import Codec, CodecError, Envelope, keyed
from services.common.config import Settings
from services.common.processor import Output

from . import persist
from .decisions import (
    ACCOUNT_EVENTS,
    EMITTED,
    MATCH_COMMANDS,
    CommandRejected,
    Decision,
    QuoteTicked,
)
from .state import Ledger

log = logging.getLogger(__name__)

# settlements the ledger refuses only when the matcher and the ledger disagree (a bug)
_SUSPECT = {"Fill", "OrderClosed", "OrderReduced"}


def record_name(decision: Decision) -> str:
    """The Avro record type a decision is written as, e.g. marketlog.account.OrderFilled."""
    return EMITTED[type(decision[1])][1]


def as_record(decision: Decision) -> dict:
    """The decision as its Avro record (a dict), envelope keyed like the decision."""
    key, record = decision
    out = record._asdict()
    if record.envelope["key"] != key:
        out["envelope"] = {**record.envelope, "key": key}
    return out


class Wire:
    """The ledger's records through the shared Codec; a decision's typed record is the values
    tuple the codec's values encoder writes (its fields are the schema's, in order).

    The envelope of the last record decoded is kept encoded: decisions about it (nearly all of
    them) copy its command_id, ts and reply_to as bytes, re-keyed to the decision's key.
    """

    def __init__(self, codec: Codec | None = None) -> None:
        self.codec = codec or Codec()
        self._write = {kind: self.codec.values_encoder(name) for kind, (_, name) in EMITTED.items()}
        self._env: dict | None = None
        self._raw: Envelope | None = None

    def decode(self, value: bytes) -> tuple[str, dict]:
        """(record name, record); raises CodecError for bytes that are not a known record."""
        name, record, self._raw = self.codec.decode_enveloped(value)
        self._env = record.get("envelope")
        return name, record

    def encode(self, decision: Decision) -> bytes:
        key, record = decision
        env = record.envelope
        if type(record) is QuoteTicked:
            # its quote is a record field, which the values encoder takes already encoded:
            # written from its dict instead (one record per tick, on partition 0 only)
            return self.codec.encode(record_name(decision), as_record(decision))
        raw = self._raw if env is self._env else self.codec.encode_envelope(env)
        return self._write[type(record)](record, keyed(raw, key))


class LedgerPartition:
    """One partition's core behind the loop's bytes-in, records-out interface."""

    __slots__ = ("ledger", "topic_of", "topics", "wire")

    def __init__(self, ledger: Ledger, wire: Wire, topics: dict[str, str]) -> None:
        self.ledger = ledger
        self.wire = wire
        self.topics = topics
        # each decision's record type -> the topic it goes to
        self.topic_of = {kind: topics[role] for kind, (role, _) in EMITTED.items()}

    def apply(self, value: bytes) -> list[Output]:
        try:
            name, record = self.wire.decode(value)
        except CodecError as exc:  # skipped the same way on every replay
            log.warning("partition %d: skipping undecodable record: %s", self.ledger.partition, exc)
            return []
        if not self.ledger.handles(name):
            log.warning(
                "partition %d: skipping %s: not a ledger command", self.ledger.partition, name
            )
            return []
        outputs = []
        for decision in self.ledger.apply(name, record):
            key, out = decision
            if type(out) is CommandRejected and out.command in _SUSPECT:
                log.warning(
                    "partition %d: settlement refused: %s", self.ledger.partition, out.reason
                )
            outputs.append(Output(self.topic_of[type(out)], key, self.wire.encode(decision)))
        return outputs

    def snapshot(self) -> bytes:
        return persist.dump(self.ledger)


class LedgerCore:
    """What the processor loop needs to run the ledger."""

    name = "ledger"

    def __init__(self, settings: Settings, wire: Wire | None = None) -> None:
        self.input_topic = settings.topic("ledger.commands")
        self.snapshot_topic = settings.topic("ledger.snapshots")
        self.topics = {
            ACCOUNT_EVENTS: settings.topic("account.events"),
            MATCH_COMMANDS: settings.topic("match.commands"),
        }
        self.wire = wire or Wire()

    def fresh(self, partition: int, partitions: int) -> LedgerPartition:
        return LedgerPartition(Ledger(partition, partitions), self.wire, self.topics)

    def restore(self, partition: int, partitions: int, state: bytes) -> LedgerPartition:
        return LedgerPartition(persist.load(state, partition, partitions), self.wire, self.topics)
