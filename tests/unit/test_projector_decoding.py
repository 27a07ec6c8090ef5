"""The projector's generated Avro readers decode exactly what fastavro (Codec.decode) does."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.common.codec import SAMPLE_DIR, Codec, CodecError
from services.projector import synth
from services.projector.decoding import Decoder

CODEC = Codec()
DECODER = Decoder(CODEC)
LONGS = st.integers(min_value=-(2**63), max_value=2**63 - 1)


def values(schema, named: dict):
    """A hypothesis strategy for values of a parsed schema."""
    if isinstance(schema, str) and schema in named:
        schema = named[schema]
    if isinstance(schema, list):
        return st.one_of([values(branch, named) for branch in schema])
    kind = schema if isinstance(schema, str) else schema["type"]
    if isinstance(schema, dict) and "name" in schema:
        named[schema["name"]] = schema
    if kind == "record":
        fields = {f["name"]: values(f["type"], named) for f in schema["fields"]}
        return st.fixed_dictionaries(fields)
    if kind == "enum":
        return st.sampled_from(schema["symbols"])
    return {
        "long": LONGS,
        "int": st.integers(min_value=-(2**31), max_value=2**31 - 1),
        "string": st.text(max_size=40),
        "bytes": st.binary(max_size=40),
        "boolean": st.booleans(),
        "null": st.none(),
    }[kind]


def test_every_projector_input_schema_gets_a_generated_reader():
    inputs = [n for n in CODEC.schemas if n.startswith(("marketlog.account.", "marketlog.market."))]
    assert all(CODEC.fingerprint(n) in DECODER.readers for n in inputs)


def test_synthetic_history_decodes_identically():
    for _, _, value in synth.encode(synth.random_history(3000, seed=2).events, CODEC):
        assert DECODER.decode(value) == CODEC.decode(value)


def test_released_samples_decode_identically_old_versions_included():
    samples = sorted(Path(SAMPLE_DIR).glob("*.avro"))
    assert samples
    for path in samples:
        data = path.read_bytes()
        assert DECODER.decode(data) == CODEC.decode(data), path.name


@pytest.mark.parametrize("name", sorted(CODEC.schemas))
@settings(max_examples=30, deadline=None)
@given(data=st.data())
def test_random_records_decode_identically(name, data):
    record = data.draw(values(CODEC.schemas[name], {}))
    encoded = CODEC.encode(name, record)
    assert DECODER.decode(encoded) == CODEC.decode(encoded)


def test_malformed_records_are_refused():
    value = CODEC.encode(
        "marketlog.market.Trade",
        {
            "envelope": {"command_id": "c", "key": "X", "ts": 1, "reply_to": ""},
            "seq": 1,
            "price": 10,
            "qty": 2,
            "maker_order_id": 3,
            "taker_order_id": 4,
            "taker_side": "SELL",
            "maker_remaining": 0,
            "taker_remaining": 0,
        },
    )
    for broken in (value[:-1], value + b"\x00", value[:-3] + b"\x09" + value[-2:]):
        with pytest.raises(CodecError):
            DECODER.decode(broken)
