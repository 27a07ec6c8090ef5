"""A blocking JSON-lines client for the e2e tests of the private and public channels."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Callable
from typing import Any

from confluent_kafka import Consumer, TopicPartition

from services.common import reader
from services.common.codec import Codec
from services.common.config import Settings
from services.common.kafka import consumer_config


class LineClient:
    def __init__(self, port: int, timeout: float = 15.0) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.timeout = timeout
        self.buffer = b""
        self.seen: list[dict[str, Any]] = []

    def close(self) -> None:
        self.sock.close()

    def send(self, message: dict[str, Any] | bytes) -> None:
        data = message if isinstance(message, bytes) else json.dumps(message).encode() + b"\n"
        self.sock.sendall(data)

    def recv(self, timeout: float | None = None) -> dict[str, Any]:
        deadline = time.monotonic() + (timeout or self.timeout)
        while b"\n" not in self.buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no line within {timeout or self.timeout}s")
            self.sock.settimeout(left)
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("closed by the server")
            self.buffer += chunk
        line, self.buffer = self.buffer.split(b"\n", 1)
        message = json.loads(line)
        self.seen.append(message)
        return message

    def until(self, predicate: Callable[[dict], bool], timeout: float | None = None) -> dict:
        """The first message that satisfies predicate (the ones before it are in ``seen``)."""
        deadline = time.monotonic() + (timeout or self.timeout)
        while True:
            message = self.recv(max(0.01, deadline - time.monotonic()))
            if predicate(message):
                return message

    def take(self, n: int, predicate: Callable[[dict], bool] = lambda m: True) -> list[dict]:
        out: list[dict] = []
        while len(out) < n:
            out.append(self.until(predicate))
        return out


def report(message: dict) -> bool:
    return message.get("message") == "executionReport"


def public(message: dict) -> bool:
    return message.get("type") in ("orderbook", "trade")


def end_offsets(settings: Settings, role: str = "ledger.commands") -> dict[int, int]:
    topic = settings.topic(role)
    return {p: end for (_, p), end in reader.end_offsets(settings, [topic]).items()}


def records_between(
    settings: Settings, start: dict[int, int], end: dict[int, int], role: str = "ledger.commands"
) -> list[tuple[str, dict]]:
    """The decoded records of a topic between two sets of end offsets."""
    topic, codec = settings.topic(role), Codec()
    consumer = Consumer(consumer_config(settings, None, **{"isolation.level": "read_uncommitted"}))
    out = []
    try:
        for p, first in start.items():
            if end[p] <= first:
                continue
            consumer.assign([TopicPartition(topic, p, first)])
            while True:
                message = consumer.poll(5)
                if message is None:
                    break
                if message.error() is None:
                    out.append(codec.decode(message.value()))
                if message.offset() >= end[p] - 1:
                    break
    finally:
        consumer.close()
    return out
