"""The matcher on Kafka: match.commands in, market.events and ledger settlements out.

A thin shell around services.matcher.state for services.common.processor: decode a command,
run the book, encode what it decided. Public events go to market.events keyed by symbol and carry
no account; settlements go to ledger.commands keyed by the account they concern. Every output
copies command_id, ts and reply_to from the input envelope. A record that cannot be decoded is
skipped with a log line: the same record is skipped the same way on every replay.
"""

from __future__ import annotations

import logging
import os

from services.common.codec import Codec, CodecError
from services.common.config import Settings
from services.common.metrics import serve_metrics
from services.common.processor import Output, Processor

from .state import BUY, CANCELLED, REDUCED, REJECTED, RESTED, SELL, TRADE, Book, Exchange
from .wire import Envelope, Wire, args_of, str_bytes

log = logging.getLogger("matcher")

PLACE = "marketlog.match.PlaceOrder"
CANCEL = "marketlog.match.CancelOrder"
REDUCE = "marketlog.match.ReduceOrder"
REPLACE = "marketlog.match.ReplaceOrder"
COMMANDS = {PLACE: Book.place, CANCEL: Book.cancel, REDUCE: Book.reduce, REPLACE: Book.replace}
OTHER_SIDE = {BUY: SELL, SELL: BUY}


def _out(topic: str, key: str, value: bytes) -> Output:
    return Output(topic, key, value)


_new_output = tuple.__new__


class Topics:
    def __init__(self, settings: Settings) -> None:
        self.commands = settings.topic("match.commands")
        self.snapshots = settings.topic("matcher.snapshots")
        self.market = settings.topic("market.events")
        self.ledger = settings.topic("ledger.commands")


class MatcherPartition:
    """The books of one match.commands partition, speaking Avro records."""

    def __init__(self, wire: Wire, topics: Topics, exchange: Exchange | None = None) -> None:
        self.wire = wire
        self.codec = wire.codec
        self.topics = topics
        self.exchange = exchange or Exchange()
        self._encode = self.outputs if wire.enabled else self.outputs_generic

    def apply(self, value: bytes) -> list[Output]:
        try:
            name, env, args = self.wire.decode(value)
        except CodecError as exc:
            log.warning("skipping a record that is not a match command: %s", exc)
            return []
        method = COMMANDS.get(name)
        if method is None or env is None:
            log.warning("skipping a %s record: not a match command", name)
            return []
        if isinstance(args, dict):  # decoded by the generic Codec (an older schema version)
            args = args_of(name, args)
        books = self.exchange.books
        book = books.get(env.key) or self.exchange.book(env.key)
        events = method(book, env.ts, *args)
        return self._encode(env.key, env, events) if events else []

    def outputs(self, symbol: str, env: Envelope, events: list[tuple]) -> list[Output]:
        """Each event's public record, then its settlements, in event order (hand-written Avro)."""
        w, market, ledger = self.wire, self.topics.market, self.topics.ledger
        public, sym, envelope = env.keyed(symbol), str_bytes(symbol), env.keyed
        out: list[Output] = []
        add = out.append
        new = _new_output  # Output(...) through tuple.__new__: a third of the cost
        for e in events:
            kind = e[0]
            if kind == TRADE:
                _, seq, _, price, qty, maker, m_acct, taker, t_acct, side, m_rem, t_rem = e
                value = w.trade(public, seq, price, qty, maker, taker, side, m_rem, t_rem)
                add(new(Output, (market, symbol, value, None)))
                m_side = OTHER_SIDE[side]
                value = w.fill(
                    envelope(m_acct), maker, sym, m_side, price, qty, m_rem, seq, "MAKER"
                )
                add(new(Output, (ledger, m_acct, value, None)))
                value = w.fill(envelope(t_acct), taker, sym, side, price, qty, t_rem, seq, "TAKER")
                add(new(Output, (ledger, t_acct, value, None)))
            elif kind == RESTED:
                _, seq, _, oid, _, side, price, qty = e
                value = w.rested(public, seq, oid, side, price, qty)
                add(new(Output, (market, symbol, value, None)))
            elif kind == CANCELLED:
                _, seq, _, oid, acct, side, price, qty, reason, was_resting = e
                value = w.cancelled(public, seq, oid, side, price, qty, reason, was_resting)
                add(new(Output, (market, symbol, value, None)))
                value = w.closed(envelope(acct), oid, sym, side, qty, reason, seq)
                add(new(Output, (ledger, acct, value, None)))
            elif kind == REDUCED:
                _, seq, _, oid, acct, side, price, qty, rem = e
                value = w.market_reduced(public, seq, oid, side, price, qty, rem)
                add(new(Output, (market, symbol, value, None)))
                value = w.ledger_reduced(envelope(acct), oid, sym, side, qty, rem, seq)
                add(new(Output, (ledger, acct, value, None)))
            elif kind == REJECTED:
                _, _, _, oid, acct, side, qty, new_oid, reason = e
                acct = acct or ""
                if qty is not None and side in OTHER_SIDE:  # a refused placement: release its hold
                    value = w.closed(envelope(acct), oid, sym, side, qty, "REJECTED", None)
                else:
                    value = w.match_rejected(envelope(acct), oid, sym, new_oid, reason)
                add(new(Output, (ledger, acct, value, None)))
        return out

    def outputs_generic(self, symbol: str, env: Envelope, events: list[tuple]) -> list[Output]:
        """The same records as outputs(), through the generic Codec (slow; the reference)."""
        encode, market, ledger = self.codec.encode, self.topics.market, self.topics.ledger
        command_id, ts, reply_to = env.command_id, env.ts, env.reply_to

        def envelope(key: str) -> dict:
            return {"command_id": command_id, "key": key, "ts": ts, "reply_to": reply_to}

        public = envelope(symbol)
        out: list[Output] = []
        for e in events:
            kind = e[0]
            if kind == TRADE:
                _, seq, _, price, qty, maker, m_acct, taker, t_acct, side, m_rem, t_rem = e
                trade = {
                    "envelope": public,
                    "seq": seq,
                    "price": price,
                    "qty": qty,
                    "maker_order_id": maker,
                    "taker_order_id": taker,
                    "taker_side": side,
                    "maker_remaining": m_rem,
                    "taker_remaining": t_rem,
                }
                out.append(_out(market, symbol, encode("marketlog.market.Trade", trade)))
                for acct, oid, fill_side, rem, role in (
                    (m_acct, maker, OTHER_SIDE[side], m_rem, "MAKER"),
                    (t_acct, taker, side, t_rem, "TAKER"),
                ):
                    fill = {
                        "envelope": envelope(acct),
                        "order_id": oid,
                        "symbol": symbol,
                        "side": fill_side,
                        "price": price,
                        "qty": qty,
                        "remaining": rem,
                        "seq": seq,
                        "role": role,
                    }
                    out.append(_out(ledger, acct, encode("marketlog.ledger.Fill", fill)))
            elif kind == RESTED:
                _, seq, _, oid, _, side, price, qty = e
                rested = {
                    "envelope": public,
                    "seq": seq,
                    "order_id": oid,
                    "side": side,
                    "price": price,
                    "qty": qty,
                }
                out.append(_out(market, symbol, encode("marketlog.market.OrderRested", rested)))
            elif kind == CANCELLED:
                _, seq, _, oid, acct, side, price, qty, reason, was_resting = e
                cancelled = {
                    "envelope": public,
                    "seq": seq,
                    "order_id": oid,
                    "side": side,
                    "price": price,
                    "qty": qty,
                    "reason": reason,
                    "rested": was_resting,
                }
                closed = {
                    "envelope": envelope(acct),
                    "order_id": oid,
                    "symbol": symbol,
                    "side": side,
                    "qty": qty,
                    "reason": reason,
                    "seq": seq,
                }
                out.append(
                    _out(market, symbol, encode("marketlog.market.OrderCancelled", cancelled))
                )
                out.append(_out(ledger, acct, encode("marketlog.ledger.OrderClosed", closed)))
            elif kind == REDUCED:
                _, seq, _, oid, acct, side, price, qty, remaining = e
                reduced = {
                    "envelope": public,
                    "seq": seq,
                    "order_id": oid,
                    "side": side,
                    "price": price,
                    "qty": qty,
                    "remaining": remaining,
                }
                settled = {
                    "envelope": envelope(acct),
                    "order_id": oid,
                    "symbol": symbol,
                    "side": side,
                    "qty": qty,
                    "remaining": remaining,
                    "seq": seq,
                }
                out.append(_out(market, symbol, encode("marketlog.market.OrderReduced", reduced)))
                out.append(_out(ledger, acct, encode("marketlog.ledger.OrderReduced", settled)))
            elif kind == REJECTED:
                out.append(self._rejected(symbol, envelope, e))
        return out

    def _rejected(self, symbol: str, envelope, e: tuple) -> Output:
        """A private refusal: a refused placement releases its hold, anything else is noted."""
        _, _, _, oid, acct, side, qty, new_oid, reason = e
        acct = acct or ""
        if qty is not None and side in OTHER_SIDE:
            closed = {
                "envelope": envelope(acct),
                "order_id": oid,
                "symbol": symbol,
                "side": side,
                "qty": qty,
                "reason": "REJECTED",
                "seq": None,
            }
            value = self.codec.encode("marketlog.ledger.OrderClosed", closed)
        else:
            rejected = {
                "envelope": envelope(acct),
                "order_id": oid,
                "symbol": symbol,
                "new_order_id": new_oid,
                "reason": reason,
            }
            value = self.codec.encode("marketlog.ledger.MatchRejected", rejected)
        return Output(self.topics.ledger, acct, value)

    def snapshot(self) -> bytes:
        return self.exchange.snapshot()


class MatcherCore:
    """The matcher as a services.common.processor Core."""

    name = "matcher"

    def __init__(self, settings: Settings, codec: Codec | None = None) -> None:
        self.topics = Topics(settings)
        self.input_topic = self.topics.commands
        self.snapshot_topic = self.topics.snapshots
        self.wire = Wire(codec or Codec())

    def fresh(self, partition: int, partitions: int) -> MatcherPartition:
        return MatcherPartition(self.wire, self.topics)

    def restore(self, partition: int, partitions: int, state: bytes) -> MatcherPartition:
        return MatcherPartition(self.wire, self.topics, Exchange.restore(state))


def processor(settings: Settings) -> Processor:
    """The EOS loop with the matcher's batch and snapshot settings (env overrides for tests)."""
    env = os.environ.get
    return Processor(
        MatcherCore(settings),
        settings,
        batch_records=int(env("MATCHER_BATCH_RECORDS", "20000")),  # big batches under backlog
        snapshot_records=int(env("MATCHER_SNAPSHOT_RECORDS", "50000")),
        snapshot_seconds=float(env("MATCHER_SNAPSHOT_SECONDS", "30")),
    )


def serve() -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    settings = Settings()
    serve_metrics(settings)
    log.info("matcher %s starting on %s", settings.instance, settings.topic("match.commands"))
    processor(settings).run()
    return 0
