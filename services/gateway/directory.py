"""The names that exist: accounts, symbols and API keys, so a surface refuses an unknown one
before anything is appended."""

from __future__ import annotations

from .bus import Bus, Event
from .commands import ACCOUNT
from .projection import Projection


class Directory:
    """Accounts, symbols and API keys that exist: those decided since this gateway started (from
    the account.events tail) plus those in the projection. A miss is final only once the
    projection has caught up with where the tail started, so nothing falls between the two."""

    TYPES = (ACCOUNT + "AccountCreated", ACCOUNT + "SymbolCreated")  # what observe() reads

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
        starts = self.bus.account_starts
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
