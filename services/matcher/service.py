"""The matcher on Kafka: match.commands in, market.events and ledger settlements out.

A thin shell around services.matcher.state for services.common.processor: decode a command,
run the book, encode what it decided. Public events go to market.events keyed by symbol and carry
no account; settlements go to ledger.commands keyed by the account they concern. Every output
copies command_id, ts and reply_to from the input envelope. A record that cannot be decoded is
skipped with a log line: the same record is skipped the same way on every replay.

Records go through the shared compiled codec without dicts: a command is decoded into its field
values (``Codec.decode_enveloped(..., as_tuple=True)``) and every output is written from a tuple
of its field values in schema order, its envelope the input's bytes re-keyed (``keyed``).
"""

from __future__ import annotations

import logging
import os
from operator import itemgetter

from services.common.book_checksum import DEPTH, checksum
from services.common.codec import Codec, CodecError, Envelope, keyed
from services.common.config import Settings
from services.common.processor import Output
from services.common.serve import serve_processor

from .state import (
    BUY,
    CANCELLED,
    REDUCED,
    REJECTED,
    REPLACED,
    RESTED,
    SELL,
    TRADE,
    Book,
    Matcher,
)

log = logging.getLogger("matcher")

PLACE = "marketlog.match.PlaceOrder"
CANCEL = "marketlog.match.CancelOrder"
REDUCE = "marketlog.match.ReduceOrder"
REPLACE = "marketlog.match.ReplaceOrder"
# a command's Book method, and its fields in the order the method takes them after ts
COMMANDS = {
    PLACE: (Book.place, ("order_id", "account", "side", "price", "qty", "tif", "expire_ts",
                         "post_only", "stp", "budget", "lot")),
    CANCEL: (Book.cancel, ("order_id", "account")),
    REDUCE: (Book.reduce, ("order_id", "account", "qty")),
    REPLACE: (Book.replace, ("order_id", "account", "new_order_id", "price", "qty")),
}  # fmt: skip
OTHER_SIDE = {BUY: SELL, SELL: BUY}
OUTPUTS = (
    "marketlog.market.Trade",
    "marketlog.market.OrderRested",
    "marketlog.market.OrderCancelled",
    "marketlog.market.OrderReduced",
    "marketlog.ledger.Fill",
    "marketlog.ledger.OrderClosed",
    "marketlog.ledger.OrderReduced",
    "marketlog.ledger.MatchRejected",
    "marketlog.ledger.OrderPlaced",
)

CHECKSUM = "marketlog.market.BookChecksum"
ALL_OUTPUTS = (*OUTPUTS, CHECKSUM)
# a BookChecksum after every command whose events make the symbol's seq pass a multiple of this;
# part of the output, so `verify` must run with the same value as the matcher did
CHECKSUM_EVERY = 100

_new_output = tuple.__new__


def checksum_every() -> int:
    """``MARKETLOG_CHECKSUM_EVERY`` (0: no checksums)."""
    return int(os.environ.get("MARKETLOG_CHECKSUM_EVERY") or CHECKSUM_EVERY)


class Topics:
    def __init__(self, settings: Settings) -> None:
        self.commands = settings.topic("match.commands")
        self.snapshots = settings.topic("matcher.snapshots")
        self.market = settings.topic("market.events")
        self.ledger = settings.topic("ledger.commands")


class MatcherPartition:
    """The books of one match.commands partition, speaking Avro records."""

    def __init__(
        self,
        codec: Codec,
        topics: Topics,
        matcher: Matcher | None = None,
        every: int = 0,
    ) -> None:
        self.codec = codec
        self.topics = topics
        self.matcher = matcher or Matcher()
        self.every = every
        self._checksum = codec.values_encoder(CHECKSUM)
        # a command's method, and its arguments picked from its values tuple (schema order)
        self._commands = {
            name: (method, itemgetter(*map(codec.fields(name).index, args)))
            for name, (method, args) in COMMANDS.items()
        }
        # the outputs' values encoders (fields in schema order, the envelope encoded)
        self._write = tuple(codec.values_encoder(name) for name in OUTPUTS)
        # a placement's order id, account and side (a replace: new id, account, no side)
        self._placed_terms = {
            PLACE: itemgetter(*map(codec.fields(PLACE).index, ("order_id", "account", "side"))),
            REPLACE: itemgetter(*map(codec.fields(REPLACE).index, ("new_order_id", "account"))),
        }

    def apply(self, value: bytes) -> list[Output]:
        try:
            name, values, env = self.codec.decode_enveloped(value, as_tuple=True)
        except CodecError as exc:
            log.warning("skipping a record that is not a match command: %s", exc)
            return []
        command = self._commands.get(name)
        if command is None:
            log.warning("skipping a %s record: not a match command", name)
            return []
        method, args = command
        symbol, ts = values[0]["key"], values[0]["ts"]
        book = self.matcher.books.get(symbol) or self.matcher.book(symbol)
        before = book.seq
        events = method(book, ts, *args(values))
        out = self.outputs(symbol, env, events) if events else []
        terms = self._placed_terms.get(name)
        if terms is not None:
            placed = self.placed(symbol, env, terms(values), events, out)
            if placed is not None:
                out.append(placed)
        every = self.every
        if every and book.seq // every != before // every:
            out.append(self.book_checksum(symbol, env, book))
        return out

    def book_checksum(self, symbol: str, env: Envelope, book: Book) -> Output:
        """The book's checksum after its latest event (services/common/book_checksum.py)."""
        crc = checksum(book.top(BUY, DEPTH), book.top(SELL, DEPTH))
        value = self._checksum((keyed(env, symbol), book.seq, DEPTH, crc))
        return _new_output(Output, (self.topics.market, symbol, value, None))

    def placed(
        self, symbol: str, env: Envelope, terms: tuple, events: list[tuple], out: list[Output]
    ) -> Output | None:
        """The placement's last record: what rests, and how many ledger records came before it,
        so a gateway can answer once every one of them is settled. None for a refused replace
        (its new order never reached the book: the refusal is the answer)."""
        oid, account, *side = terms
        open_qty, seq = 0, None
        for e in events:
            kind = e[0]
            if kind == RESTED and e[3] == oid:
                open_qty, seq = e[7], e[1]
            elif kind == REJECTED and e[7] is not None:
                return None
            elif kind == CANCELLED and e[8] == REPLACED:  # a replace: the new order's side
                side = [e[5]]
        if not side or side[0] not in OTHER_SIDE:  # a malformed placement, refused above
            return None
        ledger = self.topics.ledger
        settlements = sum(1 for o in out if o[0] == ledger)
        value = self._write[-1]((keyed(env, account), oid, symbol, side[0], open_qty, seq,
                                 settlements))  # fmt: skip
        return _new_output(Output, (ledger, account, value, None))

    def outputs(self, symbol: str, env: Envelope, events: list[tuple]) -> list[Output]:
        """Each event's public record, then its settlements, in event order.

        The values tuples follow each record's schema field order (the envelope first, encoded
        once per key); tests/unit/test_matcher_service.py checks them field by field.
        """
        trade, rested, cancelled, m_reduced, fill, closed, l_reduced, refused, _ = self._write
        market, ledger = self.topics.market, self.topics.ledger
        public = keyed(env, symbol)
        out: list[Output] = []
        add = out.append
        new = _new_output  # Output(...) through tuple.__new__: a third of the cost
        for e in events:
            kind = e[0]
            if kind == TRADE:
                _, seq, _, price, qty, maker, m_acct, taker, t_acct, side, m_rem, t_rem = e
                value = trade((public, seq, price, qty, maker, taker, side, m_rem, t_rem))
                add(new(Output, (market, symbol, value, None)))
                m_env, m_side = keyed(env, m_acct), OTHER_SIDE[side]
                value = fill((m_env, maker, symbol, m_side, price, qty, m_rem, seq, "MAKER"))
                add(new(Output, (ledger, m_acct, value, None)))
                t_env = keyed(env, t_acct)
                value = fill((t_env, taker, symbol, side, price, qty, t_rem, seq, "TAKER"))
                add(new(Output, (ledger, t_acct, value, None)))
            elif kind == RESTED:
                _, seq, _, oid, _, side, price, qty = e
                value = rested((public, seq, oid, side, price, qty))
                add(new(Output, (market, symbol, value, None)))
            elif kind == CANCELLED:
                _, seq, _, oid, acct, side, price, qty, reason, was_resting = e
                value = cancelled((public, seq, oid, side, price, qty, reason, was_resting))
                add(new(Output, (market, symbol, value, None)))
                value = closed((keyed(env, acct), oid, symbol, side, qty, reason, seq))
                add(new(Output, (ledger, acct, value, None)))
            elif kind == REDUCED:
                _, seq, _, oid, acct, side, price, qty, rem, on_book = e
                value = m_reduced((public, seq, oid, side, price, qty, rem, on_book))
                add(new(Output, (market, symbol, value, None)))
                value = l_reduced((keyed(env, acct), oid, symbol, side, qty, rem, seq))
                add(new(Output, (ledger, acct, value, None)))
            elif kind == REJECTED:
                _, _, _, oid, acct, side, qty, new_oid, reason = e
                acct = acct or ""
                if qty is not None and side in OTHER_SIDE:  # a refused placement: release its hold
                    value = closed((keyed(env, acct), oid, symbol, side, qty, "REJECTED", None))
                else:
                    value = refused((keyed(env, acct), oid, symbol, new_oid, reason))
                add(new(Output, (ledger, acct, value, None)))
        return out

    def snapshot(self) -> bytes:
        return self.matcher.snapshot()


class MatcherCore:
    """The matcher as a services.common.processor Core."""

    name = "matcher"

    def __init__(self, settings: Settings, codec: Codec | None = None) -> None:
        self.topics = Topics(settings)
        self.input_topic = self.topics.commands
        self.snapshot_topic = self.topics.snapshots
        self.codec = codec or Codec()
        self.every = checksum_every()

    def fresh(self, partition: int, partitions: int) -> MatcherPartition:
        return MatcherPartition(self.codec, self.topics, every=self.every)

    def restore(self, partition: int, partitions: int, state: bytes) -> MatcherPartition:
        return MatcherPartition(self.codec, self.topics, Matcher.restore(state), self.every)


# big batches under backlog
BATCH_RECORDS = 20_000
# a transaction at most every 40 ms under load (fills wait up to that; an idle matcher starts at
# once): its CPU per order at 150 orders/s -40 % (docs/performance.md)
TXN_INTERVAL_MS = 40


def serve() -> int:
    return serve_processor(
        "matcher", MatcherCore, batch_records=BATCH_RECORDS, txn_interval_ms=TXN_INTERVAL_MS
    )
