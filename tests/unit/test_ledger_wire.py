"""The ledger's decisions, encoded from their values tuples, are the records the Codec writes."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.common.codec import Codec, CodecError
from services.ledger import records as r
from services.ledger.decisions import ACCOUNT_EVENTS, FIELDS, as_record
from services.ledger.service import Wire
from services.ledger.simulation import Exchange, random_session
from services.ledger.state import Ledger
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


@settings(max_examples=400, deadline=None)
@given(INPUTS, OUTPUTS)
def test_a_decision_about_a_decoded_record_copies_its_envelope(named, output):
    """The decoded record's envelope bytes, re-keyed, are what encoding the dict gives."""
    name, key, record = output
    decoded = WIRE.decode(CODEC.encode(*named))[1]
    values = (decoded["envelope"], *(record[field] for field in FIELDS[name][1:]))
    decision = (ACCOUNT_EVENTS, key, name, values)
    assert WIRE.encode(decision) == CODEC.encode(name, as_record(decision))


@settings(max_examples=400, deadline=None)
@given(OUTPUTS)
def test_encode_equals_the_codec(named):
    name, key, record = named
    values = tuple(record[field] for field in FIELDS[name])
    decision = (ACCOUNT_EVENTS, key, name, values)
    assert WIRE.encode(decision) == CODEC.encode(name, as_record(decision))


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


def test_decisions_about_a_decoded_record_reuse_its_envelope_bytes():
    ex = Exchange(2, keep_decisions=False)
    random_session(ex, random.Random(3), 3000, accounts=10)
    wire, ledgers = Wire(CODEC), [Ledger(p, 2) for p in range(2)]
    for partition, name, record in ex.log:
        decoded_name, decoded = wire.decode(CODEC.encode(name, record))
        for decision in ledgers[partition].apply(decoded_name, decoded):
            assert wire.encode(decision) == CODEC.encode(decision[2], as_record(decision))
