"""What the gateway makes of a decision on account.events: decoded only if someone here needs it.

Every gateway instance hears every decision: its account streams, read-your-writes sessions and
directory need more than its own replies (docs/architecture.md, "Several instances"). But with N
gateways most decisions answer another instance's commands about accounts nobody here follows.
Those are read no further than their type, command id and key (``Codec.peek``): their place in
the log (``Heard``) is all the sessions need. Only a decision this gateway waits for (its command
id is pending), about an account with a subscriber here, or of a type a reader here wants (the
directory's new accounts and symbols) is decoded whole into an ``Event``.

``reply_to`` is not asked: a pending command id is exactly "this instance waits for it", and a
decision of this instance's command heard after its answer was given (an order's later
placement, a timed-out command) serves nobody.
"""

from __future__ import annotations

from collections.abc import Container
from dataclasses import dataclass
from typing import Any, NamedTuple

from services.common.codec import Codec


@dataclass(frozen=True)
class Event:
    """A decoded record of a topic, with where it sits in the log."""

    name: str
    record: dict[str, Any]
    partition: int
    offset: int
    # the other decisions heard under the same command id before the answer was given, for any
    # account: a replace's new OrderAccepted, an order's fills and its counterparties' fills
    related: tuple[Event, ...] = ()

    @property
    def key(self) -> str:
        return self.record["envelope"]["key"]


class Heard(NamedTuple):
    """Where a decision sits in the log and which account it is about: all a session notes."""

    key: str
    partition: int
    offset: int


class Unread(NamedTuple):
    """A decision read only as far as its envelope; decoded later if someone here turns up for it
    before it is handed on (the tail reads on its own thread, the interest changes on the loop)."""

    heard: Heard
    name: str
    command_id: str
    value: bytes


@dataclass(frozen=True)
class Interest:
    """What this gateway needs decoded: live views of the bus's tables, changed on the event loop
    and only read by the tail's thread (a membership test is atomic under the GIL)."""

    commands: Container[str]  # command ids awaiting their answer here
    accounts: Container[str]  # accounts with a subscriber here (WebSocket, private channel)
    types: Container[str]  # record types a reader here wants whole (the directory's)

    def wants(self, name: str, command_id: str, key: str) -> bool:
        return command_id in self.commands or key in self.accounts or name in self.types


def hear(
    codec: Codec, value: bytes, partition: int, offset: int, interest: Interest
) -> Event | Unread:
    """The decision at (partition, offset): an ``Event`` if ``interest`` wants it (or its
    envelope cannot be read on its own: an older version), else ``Unread``. Raises CodecError."""
    peeked = codec.peek(value)
    if peeked is not None:
        name, (command_id, key) = peeked
        if not interest.wants(name, command_id, key):
            return Unread(Heard(key, partition, offset), name, command_id, value)
    name, record = codec.decode(value)
    return Event(name, record, partition, offset)
