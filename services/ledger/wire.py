"""Ledger records to and from bytes: the shared Avro codec, fed the core's decision tuples."""

from __future__ import annotations

from services.common.codec import Codec

from .decisions import Decision, as_record


class Wire:
    def __init__(self, codec: Codec | None = None) -> None:
        self.codec = codec or Codec()

    def decode(self, value: bytes) -> tuple[str, dict]:
        """(record name, record); raises CodecError for bytes that are not a known record."""
        return self.codec.decode(value)

    def encode(self, decision: Decision) -> bytes:
        return self.codec.encode(decision[2], as_record(decision))
