"""Admin operations (the admin key): open accounts, list symbols, issue shares."""

import secrets
from typing import Annotated

from fastapi import APIRouter, Path

from services.common.money import format_cash, format_price, format_qty

from . import models as m
from .auth import new_key
from .dependencies import Admin, DeskDep
from .errors import ApiError, granted, listed

router = APIRouter(tags=["admin"])


@router.post("/accounts", status_code=201, response_model=m.CreatedAccount)
async def create_account(body: m.NewAccount, caller: Admin, desk: DeskDep) -> m.CreatedAccount:
    """Open an account. Its API key is in this answer only; the log keeps its SHA-256."""
    balance = m.cash(body.balance, "balance", positive=False)
    account_id = body.account_id or str(secrets.randbelow(9 * 10**15) + 10**15)
    key, digest = new_key()
    granted(await desk.open_account(account_id, balance, caller.session, api_key_hash=digest))
    return m.CreatedAccount(account_id=account_id, api_key=key, balance=format_cash(balance))


@router.post("/symbols", status_code=201, response_model=m.SymbolOut)
async def create_symbol(body: m.NewSymbol, caller: Admin, desk: DeskDep) -> m.SymbolOut:
    """List a symbol (listing one already listed answers created=false)."""
    tick, lot = m.price(body.tick, "tick"), m.qty(body.lot, "lot")
    event = granted(await desk.list_symbol(body.symbol, tick, lot, caller.session))
    r = event.record
    return m.SymbolOut(
        symbol=body.symbol,
        tick=format_price(r["tick"]),
        lot=format_qty(r["lot"]),
        created=r["created"],
    )


@router.post("/symbols/{symbol}/issue", response_model=m.Issued)
async def issue_shares(
    symbol: Annotated[str, Path(pattern=m.SYMBOL)], body: m.Issue, caller: Admin, desk: DeskDep
) -> m.Issued:
    """Add shares of a symbol to an account."""
    qty = m.qty(body.qty)
    await listed(desk, symbol)
    if not await desk.has_account(body.account_id):
        raise ApiError(409, f"unknown account {body.account_id}")
    event = granted(await desk.issue_shares(body.account_id, symbol, qty, caller.session))
    return m.Issued(
        account_id=body.account_id,
        symbol=symbol,
        shares_available=format_qty(event.record["shares_available"]),
    )
