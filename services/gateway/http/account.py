"""An account's cash and holdings (the account's key): deposit, withdraw, balance, positions."""

from fastapi import APIRouter

from services.common.money import format_cash, format_qty

from ..bus import Event
from . import models as m
from .auth import Caller
from .dependencies import Account, DeskDep
from .errors import granted

router = APIRouter(tags=["account"])


@router.post("/account/deposit", response_model=m.CashOut)
async def deposit(body: m.Cash, caller: Account, desk: DeskDep) -> m.CashOut:
    amount = m.cash(body.amount, "amount")
    event = granted(await desk.deposit(caller.account or "", amount, caller.session))
    return _cash(caller, amount, event)


@router.post("/account/withdraw", response_model=m.CashOut)
async def withdraw(body: m.Cash, caller: Account, desk: DeskDep) -> m.CashOut:
    amount = m.cash(body.amount, "amount")
    event = granted(await desk.withdraw(caller.account or "", amount, caller.session))
    return _cash(caller, amount, event)


@router.get("/account/balance", response_model=m.BalanceOut)
async def balance(caller: Account, desk: DeskDep) -> m.BalanceOut:
    row = await desk.balance(caller.account or "", caller.session)
    available, held = (row["available"], row["held"]) if row else (0, 0)
    return m.BalanceOut(
        account_id=caller.account or "",
        cash_available=format_cash(available),
        cash_held=format_cash(held),
    )


@router.get("/account/positions", response_model=list[m.PositionOut])
async def positions(caller: Account, desk: DeskDep) -> list[m.PositionOut]:
    rows = await desk.positions(caller.account or "", caller.session)
    return [
        m.PositionOut(
            symbol=r["symbol"], available=format_qty(r["available"]), held=format_qty(r["held"])
        )
        for r in rows
    ]


def _cash(caller: Caller, amount: int, event: Event) -> m.CashOut:
    return m.CashOut(
        account_id=caller.account or "",
        amount=format_cash(amount),
        cash_available=format_cash(event.record["cash_available"]),
    )
