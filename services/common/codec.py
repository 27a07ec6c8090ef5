"""Avro single-object encoding for every record on Marketlog's topics.

A record on the wire is ``C3 01`` + the 8-byte CRC-64-AVRO fingerprint of its writer schema's
parsing canonical form + the schemaless Avro body. There is no schema registry: the current
schemas live in ``schemas/*.avsc`` (one record type per file) and every released version is kept
in ``schemas/history/<fullname>/<fingerprint>.avsc``, so a record written by any released version
stays readable (Avro schema resolution from the old writer schema to the current reader schema).

``python -m services.common.codec release`` records the current version of every schema in the
history together with an encoded sample (``tests/unit/schema_samples``) that the compatibility test
decodes forever after.
"""

from __future__ import annotations

import io
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from fastavro import schemaless_reader, schemaless_writer
from fastavro.read import SchemaResolutionError
from fastavro.schema import fingerprint, load_schema, parse_schema, to_parsing_canonical_form

ROOT = Path(__file__).resolve().parents[2]
SCHEMA_DIR = ROOT / "schemas"
HISTORY_DIR = SCHEMA_DIR / "history"
SAMPLE_DIR = ROOT / "tests" / "unit" / "schema_samples"
MAGIC = b"\xc3\x01"
HEADER_LEN = len(MAGIC) + 8

Record = dict[str, Any]


class CodecError(ValueError):
    """A payload that is not a Marketlog record, or a record that does not fit its schema."""


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


class Codec:
    """Encodes records by schema fullname; decodes any released version to the current shape."""

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

    def fingerprint(self, name: str) -> bytes:
        return self._header[name][2:]

    def encode(self, name: str, record: Record) -> bytes:
        out = io.BytesIO()
        out.write(self._header[name])
        try:
            schemaless_writer(out, self.schemas[name], record)
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            raise CodecError(f"{name}: {exc}") from exc
        return out.getvalue()

    def decode(self, data: bytes) -> tuple[str, Record]:
        if len(data) < HEADER_LEN or data[:2] != MAGIC:
            raise CodecError("not an Avro single-object encoded record")
        entry = self._readers.get(data[2:HEADER_LEN])
        if entry is None:
            raise CodecError(f"unknown schema fingerprint {data[2:HEADER_LEN].hex()}")
        name, writer, reader = entry
        body = io.BytesIO(data)
        body.seek(HEADER_LEN)
        try:
            return name, schemaless_reader(body, writer, reader)
        except (ValueError, TypeError, EOFError, IndexError, SchemaResolutionError) as exc:
            raise CodecError(f"{name}: cannot decode: {exc}") from exc


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
