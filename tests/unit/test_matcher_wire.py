"""The matcher's hand-written Avro equals the generic Codec byte for byte, both ways."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.common.codec import Codec, CodecError
from services.matcher.wire import SHAPES, Envelope, Wire, args_of, long_bytes, str_bytes

CODEC = Codec()
WIRE = Wire(CODEC)
longs = st.integers(-(2**63), 2**63 - 1)
small = st.integers(-5, 300) | longs
text = st.text(max_size=40)
opt = st.none() | small
sides = st.sampled_from(["BUY", "SELL"])
reasons = st.sampled_from(
    CODEC.schemas["marketlog.market.OrderCancelled"]["fields"][6]["type"]["symbols"]
)
envelopes = st.fixed_dictionaries({"command_id": text, "key": text, "ts": small, "reply_to": text})


def wire_env(env: dict) -> bytes:
    tail = long_bytes(env["ts"]) + str_bytes(env["reply_to"])
    return Envelope("", env["ts"], str_bytes(env["command_id"]), tail, None).keyed(env["key"])


def test_shapes_follow_the_current_schemas():
    """A schema change disables the fast path; this says to update wire.py (and SHAPES)."""
    assert all(CODEC.fingerprint(n).hex() == fp for n, fp in SHAPES.items())
    assert WIRE.enabled


@settings(max_examples=150, deadline=None)
@given(envelopes, small, small, small, small, small, sides, small, small)
def test_trade(env, seq, price, qty, maker, taker, side, m_rem, t_rem):
    rec = {
        "envelope": env,
        "seq": seq,
        "price": price,
        "qty": qty,
        "maker_order_id": maker,
        "taker_order_id": taker,
        "taker_side": side,
        "maker_remaining": m_rem,
        "taker_remaining": t_rem,
    }
    assert WIRE.trade(wire_env(env), seq, price, qty, maker, taker, side, m_rem, t_rem) == (
        CODEC.encode("marketlog.market.Trade", rec)
    )


@settings(max_examples=150, deadline=None)
@given(envelopes, small, small, sides, opt, small, reasons, st.booleans(), small)
def test_cancel_and_close(env, seq, oid, side, price, qty, reason, rested, rem):
    e = wire_env(env)
    rec = {
        "envelope": env,
        "seq": seq,
        "order_id": oid,
        "side": side,
        "price": price,
        "qty": qty,
        "reason": reason,
        "rested": rested,
    }
    assert WIRE.cancelled(e, seq, oid, side, price, qty, reason, rested) == CODEC.encode(
        "marketlog.market.OrderCancelled", rec
    )
    sym = env["reply_to"]
    closed = {
        "envelope": env,
        "order_id": oid,
        "symbol": sym,
        "side": side,
        "qty": qty,
        "reason": reason,
        "seq": price,
    }
    assert WIRE.closed(e, oid, str_bytes(sym), side, qty, reason, price) == CODEC.encode(
        "marketlog.ledger.OrderClosed", closed
    )
    rested_rec = {
        "envelope": env,
        "seq": seq,
        "order_id": oid,
        "side": side,
        "price": qty,
        "qty": rem,
    }
    assert WIRE.rested(e, seq, oid, side, qty, rem) == CODEC.encode(
        "marketlog.market.OrderRested", rested_rec
    )
    reduced = {
        "envelope": env,
        "seq": seq,
        "order_id": oid,
        "side": side,
        "price": qty,
        "qty": rem,
        "remaining": oid,
    }
    assert WIRE.market_reduced(e, seq, oid, side, qty, rem, oid) == CODEC.encode(
        "marketlog.market.OrderReduced", reduced
    )
    settled = {
        "envelope": env,
        "order_id": oid,
        "symbol": sym,
        "side": side,
        "qty": rem,
        "remaining": qty,
        "seq": seq,
    }
    assert WIRE.ledger_reduced(e, oid, str_bytes(sym), side, rem, qty, seq) == CODEC.encode(
        "marketlog.ledger.OrderReduced", settled
    )
    fill = {
        "envelope": env,
        "order_id": oid,
        "symbol": sym,
        "side": side,
        "price": qty,
        "qty": rem,
        "remaining": seq,
        "seq": oid,
        "role": "TAKER" if rested else "MAKER",
    }
    role = fill["role"]
    assert WIRE.fill(e, oid, str_bytes(sym), side, qty, rem, seq, oid, role) == CODEC.encode(
        "marketlog.ledger.Fill", fill
    )
    rejected = {
        "envelope": env,
        "order_id": oid,
        "symbol": sym,
        "new_order_id": price,
        "reason": env["command_id"],
    }
    assert WIRE.match_rejected(e, oid, str_bytes(sym), price, env["command_id"]) == (
        CODEC.encode("marketlog.ledger.MatchRejected", rejected)
    )


places = st.fixed_dictionaries(
    {
        "envelope": envelopes,
        "account": text,
        "order_id": small,
        "side": sides,
        "price": opt,
        "qty": small,
        "tif": st.sampled_from(["GTC", "IOC", "FOK", "GTD"]),
        "expire_ts": opt,
        "post_only": st.booleans(),
        "stp": st.sampled_from(
            ["NONE", "CANCEL_NEWEST", "CANCEL_OLDEST", "CANCEL_BOTH", "DECREMENT_AND_CANCEL"]
        ),
        "budget": opt,
        "lot": small,
    }
)
others = st.one_of(
    st.tuples(
        st.just("marketlog.match.CancelOrder"),
        st.fixed_dictionaries({"envelope": envelopes, "account": text, "order_id": small}),
    ),
    st.tuples(
        st.just("marketlog.match.ReduceOrder"),
        st.fixed_dictionaries(
            {"envelope": envelopes, "account": text, "order_id": small, "qty": small}
        ),
    ),
    st.tuples(
        st.just("marketlog.match.ReplaceOrder"),
        st.fixed_dictionaries(
            {
                "envelope": envelopes,
                "account": text,
                "order_id": small,
                "new_order_id": small,
                "price": small,
                "qty": small,
            }
        ),
    ),
)


@settings(max_examples=200, deadline=None)
@given(st.tuples(st.just("marketlog.match.PlaceOrder"), places) | others)
def test_decode_equals_codec(named):
    name, rec = named
    value = CODEC.encode(name, rec)
    got_name, env, args = WIRE.decode(value)
    assert got_name == name
    assert args == args_of(name, CODEC.decode(value)[1])
    e = rec["envelope"]
    assert (env.command_id, env.key, env.ts, env.reply_to) == (
        e["command_id"],
        e["key"],
        e["ts"],
        e["reply_to"],
    )
    assert env.keyed(e["key"]) == value[10 : 10 + len(env.raw)]
    assert env.keyed("other") == wire_env({**e, "key": "other"})


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=60), st.sampled_from(sorted(SHAPES)[:4]))
def test_garbage_decodes_as_the_codec_does_or_is_a_codec_error(tail, name):
    value = WIRE.header[name] + tail
    try:
        expected = args_of(*CODEC.decode(value))
    except CodecError:
        expected = None
    try:
        got = WIRE.decode(value)[2]
    except CodecError:
        got = None
    assert got == expected


def test_truncated_records_are_codec_errors():
    rec = {
        "envelope": {"command_id": "c", "key": "X", "ts": 10**15, "reply_to": ""},
        "account": "a",
        "order_id": 7,
        "side": "BUY",
        "price": 1_250_000,
        "qty": 400,
    }
    value = CODEC.encode("marketlog.match.PlaceOrder", rec)
    for cut in range(10, len(value)):
        with pytest.raises(CodecError):
            WIRE.decode(value[:cut])
