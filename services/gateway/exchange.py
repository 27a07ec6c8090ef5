"""What both surfaces share: stamping, request/reply over the log, sessions, known names.

The gateway is the only place that reads a clock for the log: ``stamp()`` gives each command its
id (``command_ids``) and time (wall clock, microseconds).
"""

from __future__ import annotations

import itertools
import secrets
import time
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass, field

from services.common.config import Settings

from .bus import Bus, Event
from .commands import ACCOUNT, Command, Stamp
from .config import GatewaySettings
from .projection import Projection


@dataclass
class Session:
    """Offsets of account.events to read after: the newest decision per partition that a
    connection's or key's answers reflected (or, for the gateway's own, any answer)."""

    offsets: dict[int, int] = field(default_factory=dict)

    def note(self, event: Event) -> None:
        if event.offset > self.offsets.get(event.partition, -1):
            self.offsets[event.partition] = event.offset

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

    def observe(self, event: Event) -> None:
        session = self._sessions.get(event.key)
        if session is not None:
            session.note(event)


class Directory:
    """Accounts, symbols and API keys that exist: those decided since this gateway started (from
    the account.events tail) plus those in the projection. A miss is final only once the
    projection has caught up with where the tail started, so nothing falls between the two."""

    def __init__(self, projection: Projection, bus: Bus, timeout: float) -> None:
        self.projection, self.bus, self.timeout = projection, bus, timeout
        self.accounts: set[str] = set()
        self.symbols: set[str] = set()
        self.keys: dict[str, str] = {}  # SHA-256 hex of an API key -> account
        self._caught_up = False

    def observe(self, event: Event) -> None:
        if event.name == ACCOUNT + "AccountCreated":
            self.accounts.add(event.key)
            if event.record.get("api_key_hash"):
                self.keys[event.record["api_key_hash"]] = event.key
        elif event.name == ACCOUNT + "SymbolCreated":
            self.symbols.add(event.key)

    async def _catch_up(self) -> bool:
        """Wait (once) for the projection to reach the tail's start; False if it already had."""
        if self._caught_up:
            return False
        starts = self.bus.accounts_tail.start_offsets
        await self.projection.wait({p: o - 1 for p, o in starts.items() if o > 0}, self.timeout)
        self._caught_up = True
        return True

    async def has_account(self, account: str) -> bool:
        while account not in self.accounts:
            if await self.projection.account_exists(account):
                self.accounts.add(account)
            elif not await self._catch_up():
                return account in self.accounts
        return True

    async def has_symbol(self, symbol: str) -> bool:
        while symbol not in self.symbols:
            if await self.projection.symbol_exists(symbol):
                self.symbols.add(symbol)
            elif not await self._catch_up():
                return symbol in self.symbols
        return True

    async def knows_symbol(self, symbol: str) -> bool:
        """Without waiting for anything: listed as far as this gateway has heard or the
        projection shows (public reads wait on nobody's writes)."""
        if symbol in self.symbols:
            return True
        if await self.projection.symbol_exists(symbol):
            self.symbols.add(symbol)
            return True
        return False

    async def account_for_key(self, key_hash: str) -> str | None:
        while key_hash not in self.keys:
            account = await self.projection.account_for_key(key_hash)
            if account is not None:
                self.keys[key_hash] = account
            elif not await self._catch_up():
                return self.keys.get(key_hash)
        return self.keys[key_hash]


def command_ids() -> Iterator[str]:
    """Unique command ids, 32 hex digits like a uuid4's: 80 random bits for this process, then a
    counter (uuid4 per command read the OS's random source each time: 3.5 % of the gateway)."""
    prefix = secrets.token_hex(10)
    return (f"{prefix}{n:012x}" for n in itertools.count())


class Exchange:
    def __init__(self, settings: Settings, gateway: GatewaySettings) -> None:
        self.settings = settings
        self.gateway = gateway
        # the log names this process, so replies reach it and not another gateway instance
        self.instance_id = f"gateway-{settings.instance}-{secrets.token_hex(4)}"
        self._command_ids = command_ids()
        self.bus = Bus(settings, self.instance_id, gateway.decision_timeout)
        self.projection = Projection(
            settings.database_url, settings.topic("account.events"), gateway.db_pool_max
        )
        self.directory = Directory(self.projection, self.bus, gateway.projection_timeout)
        self.bus.listeners.append(self.directory.observe)
        # every decision that any answer of this gateway has reflected, whoever asked: a read
        # waits for all of it, so no connection reads anything older than an answer it was given
        self.answered = Session()

    async def start(self) -> None:
        await self.projection.start()
        await self.bus.start()

    async def stop(self) -> None:
        await self.bus.stop()
        await self.projection.stop()

    def waiting_for(self) -> list[str]:
        """What this gateway still waits for before it can answer a write and read it back;
        empty once ready."""
        if not self.bus.started:
            return ["the log: decisions are not heard yet"]
        if not self.projection.refreshed:
            return ["the projection: its applied offsets are not readable yet"]
        starts = self.bus.accounts_tail.start_offsets
        if not self.projection.reached({p: o - 1 for p, o in starts.items() if o > 0}):
            return ["the projection: it has not applied the log up to this gateway's start"]
        return []

    def stamp(self) -> Stamp:
        return Stamp(next(self._command_ids), time.time_ns() // 1000, self.instance_id)

    async def request(
        self, command: Command, session: Session | None = None, placed: bool = False
    ) -> Event:
        """Append a command, wait for its answer (``placed``: an order's placement and its
        settlements too) and note what the answer reflects."""
        return self.answering(await self.bus.request(command, placed), session)

    def answering(self, event: Event, session: Session | None = None) -> Event:
        """Note an answer about to be given, in its session and the gateway's frontier."""
        self.answered.note_answer(event)
        if session is not None:
            session.note_answer(event)
        return event

    async def caught_up(self, session: Session) -> None:
        """Before a read: wait until the projection shows the session's decisions and every
        decision any answer of this gateway has reflected so far."""
        await self.projection.wait(session.merged(self.answered), self.gateway.projection_timeout)
