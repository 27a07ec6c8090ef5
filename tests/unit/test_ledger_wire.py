"""The ledger's compiled Avro agrees with services.common.codec, byte for byte, on any record."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.common.codec import Codec, CodecError
from services.common.money import MAX_UNITS
from services.ledger import records as r
from services.ledger.decisions import ACCOUNT_EVENTS, FIELDS, as_record
from services.ledger.simulation import Exchange, random_session
from services.ledger.state import Ledger
from services.ledger.wire import Wire, long_bytes, read_long
from tests.unit.test_ledger_fuzz import LEDGER_RECORDS, from_schema

CODEC = Codec()
WIRE = Wire(CODEC)
INPUTS = st.sampled_from(LEDGER_RECORDS).flatmap(
    lambda name: from_schema(CODEC.schemas[name]).map(lambda rec: (name, rec))
)
OUTPUTS = st.sampled_from(sorted(FIELDS)).flatmap(
    lambda name: st.tuples(
        st.just(name), st.sampled_from(["a0", "S1", "é"]), from_schema(CODEC.schemas[name])
    )
)


def test_every_ledger_record_has_a_compiled_path():
    assert len(WIRE._decoders) == len(LEDGER_RECORDS)
    assert sorted(WIRE._encoders) == sorted(FIELDS)


@settings(max_examples=400, deadline=None)
@given(INPUTS)
def test_decode_equals_the_codec(named):
    name, record = named
    value = CODEC.encode(name, record)
    assert WIRE.decode(value) == CODEC.decode(value)


@settings(max_examples=400, deadline=None)
@given(OUTPUTS)
def test_encode_equals_the_codec(named):
    name, key, record = named
    values = tuple(record[field] for field in FIELDS[name])
    decision = (ACCOUNT_EVENTS, key, name, values)
    assert WIRE.encode(decision) == CODEC.encode(name, as_record(decision))


@pytest.mark.parametrize(
    "n", [0, 1, -1, 63, -64, 64, 8191, -8192, 8192, 2**31, MAX_UNITS, -(2**63)]
)
def test_longs_round_trip(n):
    data = long_bytes(n)
    assert read_long(data, 0) == (n, len(data))


def test_a_long_beyond_64_bits_is_refused():
    decision = (ACCOUNT_EVENTS, "a", "marketlog.account.CashDeposited", ({**ENV}, 1, 2**63))
    with pytest.raises(CodecError):
        WIRE.encode(decision)


ENV = r.envelope("c1", "a", 5, "gw")


def test_broken_bytes_are_a_codec_error():
    value = CODEC.encode(*r.deposit(ENV, 10))
    for broken in (value[:-1], value[:12], value[:10] + b"\xff" * 12, b"junk", b""):
        with pytest.raises(CodecError):
            WIRE.decode(broken)


def test_records_it_does_not_compile_go_to_the_codec():
    env = {**ENV, "key": "X"}
    rested = {"envelope": env, "seq": 1, "order_id": 2, "side": "BUY", "price": 3, "qty": 4}
    value = CODEC.encode("marketlog.market.OrderRested", rested)
    assert WIRE.decode(value) == ("marketlog.market.OrderRested", rested)


def test_decisions_about_a_decoded_record_reuse_its_envelope_bytes():
    ex = Exchange(2, keep_decisions=False)
    random_session(ex, random.Random(3), 3000, accounts=10)
    wire, ledgers = Wire(CODEC), [Ledger(p, 2) for p in range(2)]
    for partition, name, record in ex.log:
        decoded_name, decoded = wire.decode(CODEC.encode(name, record))
        for decision in ledgers[partition].apply(decoded_name, decoded):
            assert wire.encode(decision) == CODEC.encode(decision[2], as_record(decision))
