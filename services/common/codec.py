"""Avro single-object encoding for every record on Marketlog's topics.

A record on the wire is ``C3 01`` + the 8-byte CRC-64-AVRO fingerprint of its writer schema's
parsing canonical form + the schemaless Avro body. There is no schema registry: the current
schemas live in ``schemas/*.avsc`` (one record type per file) and every released version is kept
in ``schemas/history/<fullname>/<fingerprint>.avsc``, so a record written by any released version
stays readable (Avro schema resolution from the old writer schema to the current reader schema).

Every current schema is compiled at start into straight-line Python (``services.common.avro``):
``Codec.encode``/``decode`` write and read exactly fastavro's bytes and dicts several times faster,
and processors get two cheaper forms: ``decode_enveloped`` also returns the input's envelope as
bytes (``keyed`` re-keys it for an output), and ``values_encoder`` writes a record from a tuple of
its field values; ``peek`` reads only a record's type, command id and key (a gateway skipping
decisions nobody there needs). Records written by an older released version go through fastavro's
schema resolution. Malformed bytes (bytes left over included) raise ``CodecError``, nothing else.

``python -m services.common.codec release`` records the current version of every schema in the
history together with an encoded sample (``tests/unit/schema_samples``) that the compatibility test
decodes forever after.
"""

from __future__ import annotations

import io
import json
import sys
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

from fastavro import schemaless_reader, schemaless_writer
from fastavro.read import SchemaResolutionError
from fastavro.schema import fingerprint, load_schema, parse_schema, to_parsing_canonical_form

from .avro import (
    CodecError,
    Unsupported,
    compile_reader,
    compile_values_writer,
    compile_writer,
    str_bytes,
)

ROOT = Path(__file__).resolve().parents[2]
SCHEMA_DIR = ROOT / "schemas"
HISTORY_DIR = SCHEMA_DIR / "history"
SAMPLE_DIR = ROOT / "tests" / "unit" / "schema_samples"
MAGIC = b"\xc3\x01"
HEADER_LEN = len(MAGIC) + 8
ENVELOPE = "marketlog.Envelope"

Record = dict[str, Any]


def _fingerprint(schema: dict) -> bytes:
    # fastavro returns the CRC-64-AVRO value as little-endian hex: exactly the wire byte order.
    return bytes.fromhex(fingerprint(to_parsing_canonical_form(schema), "CRC-64-AVRO"))


def record_schema_paths(schema_dir: Path = SCHEMA_DIR) -> Iterator[Path]:
    """The ``.avsc`` files that define record types (enums are only referenced by them)."""
    for path in sorted(schema_dir.glob("*.avsc")):
        if json.loads(path.read_text())["type"] == "record":
            yield path


def load_current(schema_dir: Path = SCHEMA_DIR) -> dict[str, dict]:
    """Fullname -> parsed schema for every record type, named references inlined."""
    return {
        path.stem: load_schema(str(path), named_schemas={})
        for path in record_schema_paths(schema_dir)
    }


def record_fields(name: str, schema_dir: Path = SCHEMA_DIR) -> tuple[str, ...]:
    """The field names of a current record type, in schema order (values tuples follow it)."""
    return tuple(f["name"] for f in json.loads((schema_dir / f"{name}.avsc").read_text())["fields"])


# An input record's envelope as it came off the wire, for the records it causes: they copy its
# command_id, ts and reply_to as bytes, re-keyed (``keyed``), instead of encoding them again.
# (the record's bytes, where the envelope begins, where its key begins and ends, where it ends,
# the key): a plain tuple, made by the compiled reader at no cost.
Envelope = tuple[bytes, int, int, int, int, str]


def keyed(envelope: Envelope, key: str) -> bytes:
    """The encoded envelope of an output record keyed by key."""
    d, start, key_start, key_end, end, own = envelope
    if key == own:
        return d[start:end]
    return d[start:key_start] + str_bytes(key) + d[key_end:end]


Encoder = Callable[[Any], bytes]


class Codec:
    """Encodes records by schema fullname; decodes any released version to the current shape.

    Every current schema is compiled (services.common.avro) into readers, a dict writer and a
    values writer; fastavro is kept for records written by an older released version (schema
    resolution) and for any schema the compiler does not handle (tests/unit/test_avro.py checks
    that every current one is compiled).
    """

    def __init__(self, schema_dir: Path = SCHEMA_DIR, history_dir: Path = HISTORY_DIR) -> None:
        self.schemas = load_current(schema_dir)
        self._header = {name: MAGIC + _fingerprint(s) for name, s in self.schemas.items()}
        # fingerprint -> (fullname, writer schema, reader schema or None when they are the same)
        self._readers: dict[bytes, tuple[str, dict, dict | None]] = {}
        for name, schema in self.schemas.items():
            self._readers[self._header[name][2:]] = (name, schema, None)
        for path in sorted(history_dir.glob("*/*.avsc")) if history_dir.exists() else ():
            fp, name = bytes.fromhex(path.stem), path.parent.name
            if fp in self._readers or name not in self.schemas:
                continue
            writer = parse_schema(json.loads(path.read_text()), named_schemas={})
            self._readers[fp] = (name, writer, self.schemas[name])
        # header -> (fullname, reader, and for records with an envelope: the reader that marks
        # it, the one that also gives the fields as a tuple)
        self._compiled: dict[bytes, tuple[str, Callable, Callable | None, Callable | None]] = {}
        self._encoders: dict[str, Encoder] = {}
        self._values: dict[str, Callable[..., bytes]] = {}
        for name, schema in self.schemas.items():
            self._compile(name, schema)
        envelope = self.schemas[ENVELOPE]
        self._envelope = compile_writer(envelope, ENVELOPE)
        # an envelope alone, read as the first field of a record: where its key is
        holder = {"type": "record", "name": "Holder", "fields": [{"name": "e", "type": envelope}]}
        self._split_envelope = compile_reader(holder, ENVELOPE, split="key")
        # the envelope's first two fields at a record's start, the rest unread: (command_id, key)
        head = {"type": "record", "name": "Head", "fields": envelope["fields"][:2]}
        self._peek = compile_reader(head, ENVELOPE, as_tuple=True, prefix=True)

    def _compile(self, name: str, schema: dict) -> None:
        header = self._header[name]
        try:
            self._encoders[name] = compile_writer(schema, name, header)
            self._values[name] = compile_values_writer(schema, name, header)
        except Unsupported:
            self._encoders[name] = partial(self._encode_fastavro, name)
        try:
            read = compile_reader(schema, name)
        except Unsupported:
            return
        marked = as_tuple = None
        if schema["fields"] and schema["fields"][0]["name"] == "envelope":
            marked = compile_reader(schema, name, split="key")
            as_tuple = compile_reader(schema, name, split="key", as_tuple=True)
        self._compiled[header] = (name, read, marked, as_tuple)

    def fingerprint(self, name: str) -> bytes:
        return self._header[name][2:]

    def fields(self, name: str) -> tuple[str, ...]:
        """The record type's field names in schema order: the order of its values tuples."""
        return tuple(f["name"] for f in self.schemas[name]["fields"])

    def encode(self, name: str, record: Record) -> bytes:
        write = self._encoders.get(name)
        if write is None:
            raise CodecError(f"unknown record type {name}")
        return write(record)

    def values_encoder(self, name: str) -> Callable[..., bytes]:
        """(the record's field values in schema order, its envelope already encoded as from
        keyed()) -> the record's bytes; or (values, the envelope encoded) to write a tuple
        whose first value is the envelope dict. For processors' outputs: no dicts to build."""
        try:
            return self._values[name]
        except KeyError:
            raise CodecError(f"{name}: no compiled encoder") from None

    def encode_envelope(self, env: Record) -> Envelope:
        """An envelope dict kept encoded, for outputs of a record that was not decoded here."""
        return self._split_envelope(self._envelope(env), 0)[1]

    def decode(self, data: bytes) -> tuple[str, Record]:
        try:
            found = self._compiled.get(data[:HEADER_LEN])
        except TypeError:  # unhashable: a bytearray or memoryview, or not bytes at all
            data = _as_bytes(data)
            found = self._compiled.get(data[:HEADER_LEN])
        if found is None:
            return self._decode_fastavro(data)
        return found[0], found[1](data, HEADER_LEN)

    def name_of(self, data: bytes) -> str | None:
        """A record's type from its header alone, for any version this codec reads; None when the
        header is none of them (``decode`` then says why). For a reader that wants few types."""
        try:
            if data[:2] != MAGIC:
                return None
            found = self._readers.get(bytes(data[2:HEADER_LEN]))
        except TypeError:  # not bytes-like at all (None: a tombstone)
            return None
        return None if found is None else found[0]

    def peek(self, data: bytes) -> tuple[str, tuple[str, str]] | None:
        """A record's type and its envelope's (command_id, key), nothing else read (half the
        time of the whole envelope); None for a record without an envelope first or of an older
        version (decode it whole). The bytes after them are not checked: a malformed rest passes."""
        try:
            found = self._compiled.get(data[:HEADER_LEN])
        except TypeError:  # unhashable: a bytearray or memoryview, or not bytes at all
            data = _as_bytes(data)
            found = self._compiled.get(data[:HEADER_LEN])
        if found is None or found[2] is None:
            return None
        return found[0], self._peek(data, HEADER_LEN)

    def decode_enveloped(
        self, data: bytes, as_tuple: bool = False
    ) -> tuple[str, Record | tuple, Envelope | None]:
        """decode(), and the record's envelope kept encoded (None if it has none). as_tuple: the
        record as its field values in schema order, the order of values_encoder's tuples."""
        try:
            found = self._compiled.get(data[:HEADER_LEN])
        except TypeError:  # unhashable: a bytearray or memoryview, or not bytes at all
            data = _as_bytes(data)
            found = self._compiled.get(data[:HEADER_LEN])
        read = None if found is None else found[3 if as_tuple else 2]
        if read is None:
            name, record, envelope = self._decode_keeping_envelope(data)
            if as_tuple:
                return name, tuple(record[field] for field in self.fields(name)), envelope
            return name, record, envelope
        record, envelope = read(data, HEADER_LEN)
        return found[0], record, envelope

    def _decode_keeping_envelope(self, data: bytes) -> tuple[str, Record, Envelope | None]:
        """Records of an older version, or without an envelope: the envelope encoded again."""
        name, record = self.decode(data)
        env = record.get("envelope")
        return name, record, self.encode_envelope(env) if isinstance(env, dict) else None

    def _encode_fastavro(self, name: str, record: Record) -> bytes:
        out = io.BytesIO()
        out.write(self._header[name])
        try:
            schemaless_writer(out, self.schemas[name], record)
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            raise CodecError(f"{name}: {exc}") from exc
        return out.getvalue()

    def _decode_fastavro(self, data: bytes) -> tuple[str, Record]:
        """A record of an older schema version (or of a schema not compiled): schema resolution."""
        if len(data) < HEADER_LEN or data[:2] != MAGIC:
            raise CodecError("not an Avro single-object encoded record")
        entry = self._readers.get(data[2:HEADER_LEN])
        if entry is None:
            raise CodecError(f"unknown schema fingerprint {data[2:HEADER_LEN].hex()}")
        name, writer, reader = entry
        body = io.BytesIO(data)
        body.seek(HEADER_LEN)
        try:
            record = schemaless_reader(body, writer, reader)
        except (ValueError, TypeError, EOFError, IndexError, SchemaResolutionError) as exc:
            raise CodecError(f"{name}: cannot decode: {exc}") from exc
        if body.tell() != len(data):
            raise CodecError(f"{name}: {len(data) - body.tell()} bytes after the record")
        return name, record


def _as_bytes(data: Any) -> bytes:
    if isinstance(data, bytearray | memoryview):
        return bytes(data)
    raise CodecError(f"not a record: {type(data).__name__}")


def sample_value(schema: Any) -> Any:
    """A deterministic value for a parsed schema, used as the encoded sample of a release."""
    if isinstance(schema, list):  # union: the first non-null branch
        return sample_value(next(branch for branch in schema if branch != "null"))
    if isinstance(schema, dict):
        kind = schema["type"]
        if kind == "record":
            return {f["name"]: sample_value(f["type"]) for f in schema["fields"]}
        if kind == "enum":
            return schema["symbols"][-1]
        return sample_value(kind)
    return {
        "string": "sample",
        "long": 1234567890123,
        "int": 7,
        "boolean": True,
        "bytes": b"\x00\x01",
        "null": None,
    }[schema]


def release(
    schema_dir: Path = SCHEMA_DIR, history_dir: Path = HISTORY_DIR, sample_dir: Path = SAMPLE_DIR
) -> list[str]:
    """Record every current schema version not yet released, with an encoded sample of it."""
    codec = Codec(schema_dir, history_dir)
    added = []
    for name, schema in codec.schemas.items():
        fp = codec.fingerprint(name).hex()
        path = history_dir / name / f"{fp}.avsc"
        if path.exists():
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(to_parsing_canonical_form(schema) + "\n")
        sample = sample_value(schema)
        sample_dir.mkdir(parents=True, exist_ok=True)
        (sample_dir / f"{name}-{fp}.avro").write_bytes(codec.encode(name, sample))
        (sample_dir / f"{name}-{fp}.json").write_text(
            json.dumps(sample, default=lambda b: b.hex(), indent=1, sort_keys=True) + "\n"
        )
        added.append(f"{name} {fp}")
    return added


if __name__ == "__main__":
    if sys.argv[1:] != ["release"]:
        sys.exit("usage: python -m services.common.codec release")
    for line in release():
        print("released", line)
