"""The compiled Avro (services.common.avro, behind Codec) is fastavro, byte for byte, both ways."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import pytest
from fastavro import schemaless_reader, schemaless_writer
from hypothesis import given, settings
from hypothesis import strategies as st

from services.common.avro import (
    Unsupported,
    compile_reader,
    compile_values_writer,
    compile_writer,
    long_bytes,
    read_long,
)
from services.common.codec import HEADER_LEN, SAMPLE_DIR, SCHEMA_DIR, Codec, CodecError, keyed
from testkit import history

CODEC = Codec()
NAMES = sorted(CODEC.schemas)
LONGS = st.integers(min_value=-(2**63), max_value=2**63 - 1)
# small numbers, timestamps and the extremes, not only uniformly random 64-bit ones
NUMBERS = st.integers(-300, 20_000) | st.integers(0, 2**53) | LONGS


def values(schema, named: dict, drop: bool = False) -> st.SearchStrategy:
    """Values of a parsed schema; with drop, records may leave out fields that have defaults."""
    if isinstance(schema, str) and schema in named:
        schema = named[schema]
    if isinstance(schema, list):
        return st.one_of([values(branch, named, drop) for branch in schema])
    kind = schema if isinstance(schema, str) else schema["type"]
    if isinstance(schema, dict) and "name" in schema:
        named[schema["name"]] = schema
    if kind == "record":
        fields = {f["name"]: values(f["type"], named, drop) for f in schema["fields"]}
        optional = {f["name"] for f in schema["fields"] if "default" in f} if drop else set()
        return st.fixed_dictionaries(
            {k: v for k, v in fields.items() if k not in optional},
            optional={k: v for k, v in fields.items() if k in optional},
        )
    if kind == "enum":
        return st.sampled_from(schema["symbols"])
    return {
        "long": NUMBERS,
        "int": st.integers(min_value=-(2**31), max_value=2**31 - 1),
        "string": st.text(max_size=80),
        "bytes": st.binary(max_size=80),
        "boolean": st.booleans(),
        "null": st.none(),
    }[kind]


def fastavro_bytes(name: str, record: dict) -> bytes:
    out = io.BytesIO()
    schemaless_writer(out, CODEC.schemas[name], record)
    return CODEC._header[name] + out.getvalue()


def fastavro_record(name: str, data: bytes) -> dict:
    return schemaless_reader(io.BytesIO(data[HEADER_LEN:]), CODEC.schemas[name], None)


def fastavro_or_error(name: str, data: bytes):
    """What fastavro makes of bytes, or None where it fails or leaves bytes over."""
    body = io.BytesIO(data[HEADER_LEN:])
    try:
        record = schemaless_reader(body, CODEC.schemas[name], None)
    except Exception:
        return None
    return record if body.tell() == len(data) - HEADER_LEN else None


def values_tuple(name: str, record: dict) -> tuple:
    """The record as a values writer takes it: fields in order, nested records encoded (a
    record inside a union, like DayTrade's optional quote, stays a dict)."""
    out = []
    for field in CODEC.schemas[name]["fields"]:
        value = record[field["name"]]
        if isinstance(value, dict) and not isinstance(field["type"], list):
            value = CODEC.encode(field["type"]["name"], value)[HEADER_LEN:]
        out.append(value)
    return tuple(out)


def test_every_current_schema_is_compiled():
    assert sorted(CODEC._values) == NAMES
    assert sorted(entry[0] for entry in CODEC._compiled.values()) == NAMES
    with_envelope = sorted(name for name, _, marked, tuples in CODEC._compiled.values() if tuples)
    assert with_envelope == [n for n in NAMES if n.count(".") == 2]  # all but Envelope, Snapshot


@pytest.mark.parametrize("name", NAMES)
@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_random_records_encode_as_fastavro_and_decode_back(name, data):
    record = data.draw(values(CODEC.schemas[name], {}))
    encoded = CODEC.encode(name, record)
    assert encoded == fastavro_bytes(name, record)
    assert CODEC.decode(encoded) == (name, record) == (name, fastavro_record(name, encoded))
    in_order = values_tuple(name, record)
    assert CODEC.values_encoder(name)(in_order) == encoded
    if "envelope" in record:  # the envelope given apart, the dict left in the tuple
        head, dict_first = in_order[0], (record["envelope"], *in_order[1:])
        assert CODEC.values_encoder(name)(dict_first, head) == encoded
        as_read = tuple(record[f["name"]] for f in CODEC.schemas[name]["fields"])  # dicts
        assert CODEC.decode_enveloped(encoded, as_tuple=True)[:2] == (name, as_read)


@pytest.mark.parametrize("name", NAMES)
@settings(max_examples=30, deadline=None)
@given(data=st.data())
def test_missing_fields_take_their_defaults_as_in_fastavro(name, data):
    record = data.draw(values(CODEC.schemas[name], {}, drop=True))
    encoded = CODEC.encode(name, record)
    assert encoded == fastavro_bytes(name, record)
    assert CODEC.decode(encoded)[1] == fastavro_record(name, encoded)


def test_every_released_sample_decodes_as_fastavro_resolves_it():
    samples = sorted(SAMPLE_DIR.glob("*.avro"))
    assert len(samples) >= len(NAMES)
    for path in samples:
        data = path.read_bytes()
        assert CODEC.decode(data) == CODEC._decode_fastavro(data), path.name


def test_a_synthetic_projector_history_decodes_as_fastavro_reads_it():
    for _, _, value in history.encode(history.random_history(3000, seed=2).events, CODEC):
        name, record = CODEC.decode(value)
        assert record == fastavro_record(name, value)


@pytest.mark.parametrize("name", NAMES)
@settings(max_examples=80, deadline=None)
@given(data=st.data(), tail=st.binary(max_size=60))
def test_garbage_is_a_codec_error_or_what_fastavro_reads(name, data, tail):
    value = CODEC._header[name] + tail
    expected = fastavro_or_error(name, value)
    try:
        got = CODEC.decode(value)[1]
    except CodecError:
        return
    assert got == expected


@pytest.mark.parametrize("name", NAMES)
@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_damaged_records_are_codec_errors_or_what_fastavro_reads(name, data):
    encoded = CODEC.encode(name, data.draw(values(CODEC.schemas[name], {})))
    cut = data.draw(st.integers(HEADER_LEN, len(encoded) - 1))
    for broken in (encoded[:cut], encoded + b"\x00"):  # truncated, or something left over
        with pytest.raises(CodecError):
            CODEC.decode(broken)
    at, byte = data.draw(st.integers(HEADER_LEN, len(encoded) - 1)), data.draw(st.integers(0, 255))
    flipped = encoded[:at] + bytes((byte,)) + encoded[at + 1 :]
    try:
        got = CODEC.decode(flipped)[1]
    except CodecError:
        return
    assert got == fastavro_or_error(name, flipped)


@pytest.mark.parametrize(
    "n", [0, 1, -1, 63, -64, 64, 8191, -8192, 8192, 2**31, 2**53 + 1, 2**63 - 1, -(2**63)]
)
def test_longs_round_trip(n):
    data = long_bytes(n)
    assert read_long(data, 0) == (n, len(data))
    out = io.BytesIO()
    schemaless_writer(out, "long", n)
    assert data == out.getvalue()


def deposit(amount: int) -> dict:
    env = {"command_id": "c", "key": "a", "ts": 5, "reply_to": ""}
    return {"envelope": env, "amount": amount}


@pytest.mark.parametrize("n", [2**63, -(2**63) - 1, 2**64, -(2**70)])
def test_longs_beyond_64_bits_are_refused(n):
    with pytest.raises(CodecError):
        CODEC.encode("marketlog.ledger.Deposit", deposit(n))
    env = CODEC.encode("marketlog.Envelope", deposit(0)["envelope"])[HEADER_LEN:]
    with pytest.raises(CodecError):
        CODEC.values_encoder("marketlog.ledger.Deposit")((env, n))


@pytest.mark.parametrize(
    "varint", [b"\xff" * 9 + b"\x02", b"\xff" * 10 + b"\x01", b"\x80" * 11 + b"\x00"]
)
def test_varints_beyond_64_bits_are_codec_errors(varint):
    value = CODEC.encode("marketlog.ledger.Deposit", deposit(1))
    with pytest.raises(CodecError):
        CODEC.decode(value[:-1] + varint)


def test_values_that_do_not_fit_are_codec_errors():
    for amount in ("ten", None, 1.5, [1]):
        with pytest.raises(CodecError):
            CODEC.encode("marketlog.ledger.Deposit", deposit(amount))
    with pytest.raises(CodecError):
        CODEC.encode("marketlog.ledger.Deposit", {"amount": 1})  # no envelope, no default
    env = CODEC.encode("marketlog.Envelope", deposit(0)["envelope"])[HEADER_LEN:]
    write = CODEC.values_encoder("marketlog.ledger.Deposit")
    for wrong in ((env,), (env, 1, 2), (deposit(0)["envelope"], 1)):
        with pytest.raises(CodecError):
            write(wrong)
    with pytest.raises(CodecError):
        CODEC.encode("marketlog.ledger.Nothing", {})


@pytest.mark.parametrize("data", [None, b"", b"\xc3\x01", bytearray(b"\xc3\x01" + b"\x00" * 9)])
def test_what_is_not_bytes_of_a_record_is_a_codec_error(data):
    with pytest.raises(CodecError):
        CODEC.decode(data)


def test_a_bytearray_decodes_like_bytes():
    value = CODEC.encode("marketlog.ledger.Deposit", deposit(7))
    assert CODEC.decode(bytearray(value)) == CODEC.decode(value)


@settings(max_examples=100, deadline=None)
@given(st.sampled_from([n for n in NAMES if n.count(".") == 2]), st.text(max_size=10), st.data())
def test_a_decoded_envelope_is_copied_as_bytes_and_re_keyed(name, key, data):
    record = data.draw(values(CODEC.schemas[name], {}))
    encoded = CODEC.encode(name, record)
    got_name, got, env = CODEC.decode_enveloped(encoded)
    assert (got_name, got) == (name, record)
    rekeyed = {**record["envelope"], "key": key}
    expected = CODEC.encode("marketlog.Envelope", rekeyed)[HEADER_LEN:]
    assert keyed(env, key) == expected == keyed(CODEC.encode_envelope(rekeyed), key)
    assert keyed(CODEC.encode_envelope(record["envelope"]), key) == expected
    assert keyed(CODEC.decode_enveloped(encoded, as_tuple=True)[2], key) == expected


UNSUPPORTED = {
    "type": "record",
    "name": "t.Odd",
    "fields": [
        {"name": "envelope", "type": "marketlog.Envelope"},
        {"name": "x", "type": "double"},
        {"name": "xs", "type": {"type": "array", "items": "long"}},
    ],
}


def test_what_the_compiler_does_not_handle_stays_with_fastavro(tmp_path: Path):
    for compile_one in (compile_reader, compile_writer, compile_values_writer):
        with pytest.raises(Unsupported):
            compile_one(UNSUPPORTED, "t.Odd")
    for name, split in (("marketlog.Snapshot", "key"), ("marketlog.ledger.Deposit", "nothing")):
        with pytest.raises(Unsupported):  # no envelope to split, or no such field in it
            compile_reader(CODEC.schemas[name], name, split=split)
    schemas = tmp_path / "schemas"
    shutil.copytree(SCHEMA_DIR, schemas, ignore=shutil.ignore_patterns("history"))
    (schemas / "t.Odd.avsc").write_text(json.dumps(UNSUPPORTED))
    codec = Codec(schemas, tmp_path / "history")
    record = {**deposit(0), "x": 1.5, "xs": [1, 2]}
    del record["amount"]
    encoded = codec.encode("t.Odd", record)
    name, got, env = codec.decode_enveloped(encoded)
    assert (name, got) == ("t.Odd", record)
    assert keyed(env, "a") == CODEC.encode("marketlog.Envelope", record["envelope"])[HEADER_LEN:]
    assert codec.decode_enveloped(encoded, as_tuple=True)[1] == tuple(record.values())
    with pytest.raises(CodecError):
        codec.values_encoder("t.Odd")
