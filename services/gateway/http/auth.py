"""Who is calling: ``Authorization: Bearer <key>`` -> an account, or the admin. Plus the per-key
token bucket. A key is looked up by its SHA-256 only; the key itself is never stored or logged."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass

from ..desk import Desk
from ..ratelimit import Buckets
from ..sessions import AccountSessions, Session
from .errors import ApiError


@dataclass(frozen=True)
class Caller:
    account: str | None  # None: the admin
    session: Session

    @property
    def admin(self) -> bool:
        return self.account is None


def new_key() -> tuple[str, str]:
    """A fresh API key and the SHA-256 hex that is all the log and the tables ever see."""
    key = secrets.token_urlsafe(32)
    return key, key_hash(key)


def key_hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def bearer(header: str | None) -> str | None:
    if not header:
        return None
    scheme, _, token = header.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token or len(token) > 256:
        return None
    return token


class Auth:
    def __init__(self, desk: Desk, admin_key: str, rate: float, burst: float) -> None:
        self.desk = desk
        self.admin_key = admin_key
        self.buckets = Buckets(rate, burst)
        self.admin_session = Session()
        self.sessions = AccountSessions()
        desk.listen(self.sessions.observe)

    async def identify(self, token: str | None) -> Caller:
        """The caller a key belongs to; ApiError 401 for a missing or unknown key."""
        if token is None:
            raise ApiError(401, "missing API key: send Authorization: Bearer <key>")
        if self.admin_key and hmac.compare_digest(token.encode(), self.admin_key.encode()):
            caller = Caller(None, self.admin_session)
        else:
            account = await self.desk.account_for_key(key_hash(token))
            if account is None:
                raise ApiError(401, "unknown API key")
            caller = Caller(account, self.sessions.get(account))
        self.limit(caller.account or "admin")
        return caller

    def limit(self, who: str) -> None:
        if not self.buckets.take(who, time.monotonic()):
            raise ApiError(429, "rate limit exceeded for this key; slow down")

    async def account(self, token: str | None) -> Caller:
        caller = await self.identify(token)
        if caller.admin:
            raise ApiError(403, "the admin key has no account; use the account's own key")
        return caller

    async def admin(self, token: str | None) -> Caller:
        caller = await self.identify(token)
        if not caller.admin:
            raise ApiError(403, "this needs the admin key")
        return caller
