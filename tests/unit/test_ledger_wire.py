"""The ledger's typed decisions, encoded as the values tuples they are, are the Codec's records."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.common.codec import Codec, CodecError
from services.ledger.decisions import EMITTED, CashDeposited
from services.ledger.service import Wire, as_record, record_name
from services.ledger.state import Ledger
from testkit import records as r
from testkit.pipeline import LEDGER_COMMANDS, Pipeline
from testkit.simulation import random_session
from tests.unit.test_ledger_fuzz import LEDGER_RECORDS, from_schema

CODEC = Codec()
WIRE = Wire(CODEC)
INPUTS = st.sampled_from(LEDGER_RECORDS).flatmap(
    lambda name: from_schema(CODEC.schemas[name]).map(lambda rec: (name, rec))
)
# (record type, key, the record's fields as a dict)
OUTPUTS = st.sampled_from(sorted(EMITTED, key=lambda kind: kind.__name__)).flatmap(
    lambda kind: st.tuples(
        st.just(kind),
        st.sampled_from(["a0", "S1", "é"]),
        from_schema(CODEC.schemas[EMITTED[kind][1]]),
    )
)


@settings(max_examples=400, deadline=None)
@given(INPUTS, OUTPUTS)
def test_a_decision_about_a_decoded_record_copies_its_envelope(named, output):
    """The decoded record's envelope bytes, re-keyed, are what encoding the dict gives."""
    kind, key, record = output
    decoded = WIRE.decode(CODEC.encode(*named))[1]
    decision = (key, kind(**{**record, "envelope": decoded["envelope"]}))
    assert WIRE.encode(decision) == CODEC.encode(record_name(decision), as_record(decision))


@settings(max_examples=400, deadline=None)
@given(OUTPUTS)
def test_encode_equals_the_codec(named):
    kind, key, record = named
    decision = (key, kind(**record))
    assert WIRE.encode(decision) == CODEC.encode(record_name(decision), as_record(decision))


def test_a_long_beyond_64_bits_is_refused():
    decision = ("a", CashDeposited({**ENV}, 1, 2**63))
    with pytest.raises(CodecError):
        WIRE.encode(decision)


ENV = r.envelope("c1", "a", 5, "gw")


def test_broken_bytes_are_a_codec_error():
    value = CODEC.encode(*r.deposit(ENV, 10))
    for broken in (value[:-1], value[:12], value[:10] + b"\xff" * 12, b"junk", b""):
        with pytest.raises(CodecError):
            WIRE.decode(broken)


def test_decisions_about_a_decoded_record_reuse_its_envelope_bytes():
    pipeline = Pipeline(2, project=False)
    random_session(pipeline, random.Random(3), 3000, accounts=10)
    wire, ledgers = Wire(CODEC), [Ledger(p, 2) for p in range(2)]
    for partition, _, record in pipeline.log.in_order(LEDGER_COMMANDS):
        decoded_name, decoded = wire.decode(record.value)
        for decision in ledgers[partition].apply(decoded_name, decoded):
            expected = CODEC.encode(record_name(decision), as_record(decision))
            assert wire.encode(decision) == expected
