"""Avro single-object encoding; every released schema version stays readable."""

from __future__ import annotations

import json
import shutil

import pytest
from fastavro.schema import fingerprint

from services.common.codec import HISTORY_DIR, SAMPLE_DIR, Codec, CodecError, load_current, release

CODEC = Codec()


def test_single_object_header_is_magic_plus_little_endian_crc64_fingerprint():
    # Avro specification's test vector: CRC-64-AVRO("null") = 0x63DD24E7CC258F8A
    assert fingerprint('"null"', "CRC-64-AVRO") == "8a8f25cce724dd63"
    record = {
        "envelope": {"command_id": "c1", "key": "42", "ts": 1, "reply_to": ""},
        "balance": 5,
        "api_key_hash": "",
    }
    data = CODEC.encode("marketlog.ledger.CreateAccount", record)
    assert data[:2] == b"\xc3\x01"
    assert data[2:10] == CODEC.fingerprint("marketlog.ledger.CreateAccount")
    assert CODEC.decode(data) == ("marketlog.ledger.CreateAccount", record)


# records no command caused: a processor's own state and progress, the envelope itself, a quote
WITHOUT_ENVELOPE = (
    "marketlog.Snapshot",
    "marketlog.Position",
    "marketlog.Envelope",
    "marketlog.Quote",
)


def test_every_record_type_round_trips_with_defaults_filled():
    for name in CODEC.schemas:
        fields = {f["name"] for f in CODEC.schemas[name]["fields"]}
        assert name in WITHOUT_ENVELOPE or "envelope" in fields, name


@pytest.mark.parametrize("data", [b"", b"\xc3\x01", b"\x00" * 20, b"\xc3\x01" + b"\x00" * 8 + b"x"])
def test_garbage_is_refused_with_a_codec_error(data):
    with pytest.raises(CodecError):
        CODEC.decode(data)


def test_a_record_that_does_not_fit_its_schema_is_refused():
    with pytest.raises(CodecError):
        CODEC.encode("marketlog.ledger.Deposit", {"envelope": None, "amount": "ten"})


def test_every_current_schema_version_is_released():
    missing = [
        name
        for name in CODEC.schemas
        if not (HISTORY_DIR / name / f"{CODEC.fingerprint(name).hex()}.avsc").exists()
    ]
    assert not missing, f"run `python -m services.common.codec release` for: {missing}"


def _matches(expected, actual) -> bool:
    """Released sample values survive decoding (new fields with defaults may be added)."""
    if isinstance(expected, dict):
        return all(_matches(v, actual[k]) for k, v in expected.items())
    if isinstance(actual, bytes):
        return actual.hex() == expected
    return expected == actual


def test_every_released_sample_still_decodes_to_its_values():
    samples = sorted(SAMPLE_DIR.glob("*.avro"))
    assert len(samples) >= len(CODEC.schemas)
    for sample in samples:
        name, record = CODEC.decode(sample.read_bytes())
        assert sample.name.startswith(name + "-")
        assert _matches(json.loads(sample.with_suffix(".json").read_text()), record), sample.name


def test_peek_reads_the_envelope_of_a_current_record_and_leaves_the_rest_to_decode():
    """The gateway's lazy tail: a current record's type, command id and key; None for
    an older version or a record without an envelope (decoded whole)."""
    peeked = 0
    for sample in sorted(SAMPLE_DIR.glob("*.avro")):
        data = sample.read_bytes()
        name, record = CODEC.decode(data)
        found = CODEC.peek(data)
        if data[2:10] != CODEC.fingerprint(name) or "envelope" not in record:
            assert found is None, sample.name
            continue
        env = record["envelope"]
        assert found == (name, (env["command_id"], env["key"]))
        peeked += 1
    assert peeked >= len(CODEC.schemas) - len(WITHOUT_ENVELOPE)  # every current type with one


def test_name_of_reads_only_the_header_of_every_released_version():
    """Every released sample (older versions too) is named as decode names it; bytes that are
    not a record of ours are None, not an error."""
    for sample in sorted(SAMPLE_DIR.glob("*.avro")):
        data = sample.read_bytes()
        assert CODEC.name_of(data) == CODEC.decode(data)[0], sample.name
        assert CODEC.name_of(data[:2] + bytes(8) + data[10:]) is None
    assert CODEC.name_of(b"") is None and CODEC.name_of(b"not avro at all") is None
    assert CODEC.name_of(None) is None  # type: ignore[arg-type]  # a tombstone's value


def test_an_incompatible_change_would_be_caught(tmp_path):
    """Rename a field without a default: the old released sample must stop decoding."""
    schemas, history, samples = tmp_path / "schemas", tmp_path / "history", tmp_path / "samples"
    shutil.copytree(HISTORY_DIR.parent, schemas, ignore=shutil.ignore_patterns("history"))
    release(schemas, history, samples)
    path = schemas / "marketlog.ledger.Deposit.avsc"
    schema = json.loads(path.read_text())
    schema["fields"][1]["name"] = "cash"
    path.write_text(json.dumps(schema))
    codec = Codec(schemas, history)
    old = next(samples.glob("marketlog.ledger.Deposit-*.avro")).read_bytes()
    with pytest.raises(CodecError):
        codec.decode(old)
    # adding a field with a default is backward compatible
    schema["fields"][1]["name"] = "amount"
    schema["fields"].append({"name": "memo", "type": "string", "default": ""})
    path.write_text(json.dumps(schema))
    assert Codec(schemas, history).decode(old)[1]["memo"] == ""


def test_load_current_inlines_named_types():
    schema = load_current()["marketlog.ledger.PlaceOrder"]
    assert schema["fields"][0]["type"]["name"] == "marketlog.Envelope"
