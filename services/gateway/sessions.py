"""Read-your-writes: what a reader must wait for before the projection answers it.

A session is the newest ``account.events`` offset per partition of every decision that its
answers reflected. A read waits until the projection has applied that far (``Desk`` merges the
caller's session with the gateway's own, so no connection reads anything older than an answer
this gateway gave anyone).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field

from .hearing import Event, Heard


@dataclass
class Session:
    """Offsets of account.events to read after: the newest decision per partition that a
    connection's or key's answers reflected (or, for the gateway's own, any answer)."""

    offsets: dict[int, int] = field(default_factory=dict)

    def note(self, heard: Event | Heard) -> None:
        if heard.offset > self.offsets.get(heard.partition, -1):
            self.offsets[heard.partition] = heard.offset

    def note_answer(self, event: Event) -> None:
        """An answer and every decision it reflected (the order's fills, its counterparties')."""
        self.note(event)
        for related in event.related:
            self.note(related)

    def merged(self, other: Session) -> dict[int, int]:
        offsets = dict(self.offsets)
        for partition, offset in other.offsets.items():
            if offset > offsets.get(partition, -1):
                offsets[partition] = offset
        return offsets


class AccountSessions:
    """The HTTP sessions, one per account (newest used kept, up to ``limit``). Each also notes
    every decision about its account the tail hears, not only its own writes' answers: a client
    told of a fill on its private channel then reads that fill, never the order before it."""

    def __init__(self, limit: int = 100_000) -> None:
        self.limit = limit
        self._sessions: OrderedDict[str, Session] = OrderedDict()

    def get(self, account: str) -> Session:
        session = self._sessions.get(account)
        if session is None:
            session = self._sessions[account] = Session()
            if len(self._sessions) > self.limit:
                self._sessions.popitem(last=False)
        self._sessions.move_to_end(account)
        return session

    def observe(self, heard: Heard) -> None:
        session = self._sessions.get(heard.key)
        if session is not None:
            session.note(heard)
