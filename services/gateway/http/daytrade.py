"""Day trading over HTTP (docs/daytrading.md): the 16 commands for the key's own account, and the
admin's DUMPLOG. The key's account is the userid: an account opened by the admin (with a key) can
day-trade here and on the line protocol; one made by ADD on the line protocol has no key, so only
the line protocol reaches it. Every command is appended with the quote it uses (as on the line
protocol) and answered from its DayTradeDecided; a refusal is a 409 ``code: sentence``.
"""

import json
from pathlib import Path as FilePath
from typing import Annotated, Any

from fastapi import APIRouter, Path
from fastapi.responses import FileResponse

from ..bus import Event
from ..channels.daytrade_lines import summary_json
from ..commands import DAYTRADE_DECIDED, QUOTED_COMMANDS, DayTradeSpec
from ..desk import Desk
from ..quotes import QuoteUnavailable
from . import models as m
from .auth import Caller
from .dependencies import Account, Admin, DeskDep
from .errors import ApiError, granted

router = APIRouter(tags=["daytrade"])
admin_router = APIRouter(tags=["admin"])
Symbol = Annotated[str, Path(pattern=m.DAYTRADE_SYMBOL, description="1 to 3 capital letters.")]
DumpName = Annotated[str, Path(pattern=m.DUMP_NAME)]
XML_FILE: dict[int | str, dict[str, Any]] = {
    200: {
        "content": {"application/xml": {"schema": {"type": "string"}}},
        "description": "The DUMPLOG file (logfile.xsd).",
    }
}


async def _command(
    desk: Desk,
    caller: Caller,
    command: str,
    symbol: str | None = None,
    amount: int | None = None,
    trigger: int | None = None,
    filename: str | None = None,
) -> Event:
    """Append one day-trading command for the caller (with its quote) and return its
    DayTradeDecided; 409 if the ledger refused it, 503 without a quote."""
    user = caller.account or ""
    quote = None
    if command in QUOTED_COMMANDS and symbol is not None:
        quote = desk.cached_quote(symbol)
        if quote is None:
            try:
                quote = await desk.quote(symbol, user)
            except QuoteUnavailable as exc:
                raise ApiError(503, f"quote_unavailable: {exc}") from None
    spec = DayTradeSpec(command, user, desk.next_txn(), symbol, amount, trigger, filename)
    event = granted(await desk.day_trade(spec, quote, caller.session))
    record = event.record
    if event.name == DAYTRADE_DECIDED and not record["ok"]:
        command_id = record["envelope"]["command_id"]
        raise ApiError(409, f"{record['code']}: {record['message']}", command_id)
    return event


def _out(event: Event) -> m.DayTradeOut:
    return m.day_trade_out(event.record)


@router.post("/daytrade/add", response_model=m.DayTradeOut)
async def add(body: m.DayTradeAmount, caller: Account, desk: DeskDep) -> m.DayTradeOut:
    """ADD: dollars into the account's available cash."""
    amount = m.DOLLARS.units(body.amount, "amount")
    return _out(await _command(desk, caller, "ADD", amount=amount))


@router.post("/daytrade/quote/{symbol}", response_model=m.DayTradeOut)
async def quote(symbol: Symbol, caller: Account, desk: DeskDep) -> m.DayTradeOut:
    """QUOTE: the symbol's price (from the quote server, or the gateway's cache of it)."""
    return _out(await _command(desk, caller, "QUOTE", symbol))


@router.post("/daytrade/buy", response_model=m.DayTradeOut)
async def buy(body: m.DayTradeOrder, caller: Account, desk: DeskDep) -> m.DayTradeOut:
    """BUY: as many whole shares as the amount buys at the quote, held for 60 s until
    committed."""
    amount = m.DOLLARS.units(body.amount, "amount")
    return _out(await _command(desk, caller, "BUY", body.symbol, amount))


@router.post("/daytrade/commit-buy", response_model=m.DayTradeOut)
async def commit_buy(caller: Account, desk: DeskDep) -> m.DayTradeOut:
    """COMMIT_BUY: the most recent pending BUY (of the last 60 s)."""
    return _out(await _command(desk, caller, "COMMIT_BUY"))


@router.post("/daytrade/cancel-buy", response_model=m.DayTradeOut)
async def cancel_buy(caller: Account, desk: DeskDep) -> m.DayTradeOut:
    """CANCEL_BUY: the most recent pending BUY; its cash comes back."""
    return _out(await _command(desk, caller, "CANCEL_BUY"))


@router.post("/daytrade/sell", response_model=m.DayTradeOut)
async def sell(body: m.DayTradeOrder, caller: Account, desk: DeskDep) -> m.DayTradeOut:
    """SELL: as many whole shares as the amount is worth at the quote, set aside for 60 s until
    committed."""
    amount = m.DOLLARS.units(body.amount, "amount")
    return _out(await _command(desk, caller, "SELL", body.symbol, amount))


@router.post("/daytrade/commit-sell", response_model=m.DayTradeOut)
async def commit_sell(caller: Account, desk: DeskDep) -> m.DayTradeOut:
    """COMMIT_SELL: the most recent pending SELL."""
    return _out(await _command(desk, caller, "COMMIT_SELL"))


@router.post("/daytrade/cancel-sell", response_model=m.DayTradeOut)
async def cancel_sell(caller: Account, desk: DeskDep) -> m.DayTradeOut:
    """CANCEL_SELL: the most recent pending SELL; its shares come back."""
    return _out(await _command(desk, caller, "CANCEL_SELL"))


@router.put("/daytrade/buy-settings/{symbol}/amount", response_model=m.DayTradeOut)
async def set_buy_amount(
    symbol: Symbol, body: m.DayTradeAmount, caller: Account, desk: DeskDep
) -> m.DayTradeOut:
    """SET_BUY_AMOUNT: the cash a buy trigger will spend, reserved now."""
    amount = m.DOLLARS.units(body.amount, "amount")
    return _out(await _command(desk, caller, "SET_BUY_AMOUNT", symbol, amount))


@router.put("/daytrade/buy-settings/{symbol}/trigger", response_model=m.DayTradeOut)
async def set_buy_trigger(
    symbol: Symbol, body: m.DayTradeTrigger, caller: Account, desk: DeskDep
) -> m.DayTradeOut:
    """SET_BUY_TRIGGER: buy when a quote tick is at or below this price."""
    trigger = m.TRIGGER_PRICE.units(body.trigger, "trigger")
    return _out(await _command(desk, caller, "SET_BUY_TRIGGER", symbol, trigger=trigger))


@router.delete("/daytrade/buy-settings/{symbol}", response_model=m.DayTradeOut)
async def cancel_set_buy(symbol: Symbol, caller: Account, desk: DeskDep) -> m.DayTradeOut:
    """CANCEL_SET_BUY: the amount and trigger go; the reserve comes back."""
    return _out(await _command(desk, caller, "CANCEL_SET_BUY", symbol))


@router.put("/daytrade/sell-settings/{symbol}/amount", response_model=m.DayTradeOut)
async def set_sell_amount(
    symbol: Symbol, body: m.DayTradeAmount, caller: Account, desk: DeskDep
) -> m.DayTradeOut:
    """SET_SELL_AMOUNT: the dollars a sell trigger will sell for."""
    amount = m.DOLLARS.units(body.amount, "amount")
    return _out(await _command(desk, caller, "SET_SELL_AMOUNT", symbol, amount))


@router.put("/daytrade/sell-settings/{symbol}/trigger", response_model=m.DayTradeOut)
async def set_sell_trigger(
    symbol: Symbol, body: m.DayTradeTrigger, caller: Account, desk: DeskDep
) -> m.DayTradeOut:
    """SET_SELL_TRIGGER: sell the reserved shares when a quote tick is at or above this
    price."""
    trigger = m.TRIGGER_PRICE.units(body.trigger, "trigger")
    return _out(await _command(desk, caller, "SET_SELL_TRIGGER", symbol, trigger=trigger))


@router.delete("/daytrade/sell-settings/{symbol}", response_model=m.DayTradeOut)
async def cancel_set_sell(symbol: Symbol, caller: Account, desk: DeskDep) -> m.DayTradeOut:
    """CANCEL_SET_SELL: the amount and trigger go; reserved shares come back."""
    return _out(await _command(desk, caller, "CANCEL_SET_SELL", symbol))


@router.get("/daytrade/summary", response_model=dict[str, Any])
async def summary(caller: Account, desk: DeskDep) -> dict[str, Any]:
    """DISPLAY_SUMMARY (logged like every command): cash, held cash, holdings, pending BUYs
    and SELLs (most recent first), buy and sell settings; the line protocol's JSON."""
    event = await _command(desk, caller, "DISPLAY_SUMMARY")
    return json.loads(summary_json(event.record.get("summary") or "{}"))


def _folder(desk: Desk, account: str | None) -> FilePath:
    """Where an HTTP DUMPLOG goes: the admin's in the dump directory, an account's in its own
    subdirectory (so an account downloads only its own files)."""
    return desk.dump_dir if account is None else desk.dump_dir / "accounts" / account


async def _dump(desk: Desk, caller: Caller, filename: str, url: str) -> m.DumpOut:
    event = await _command(desk, caller, "DUMPLOG", filename=filename)
    try:
        name, _, length = await desk.dump_log(
            event, filename, caller.session, _folder(desk, caller.account)
        )
    except (OSError, ValueError) as exc:
        raise ApiError(503, f"could not write the log: {exc}") from None
    command_id = event.record["envelope"]["command_id"]
    return m.DumpOut(
        command_id=command_id, txn=event.record["txn"], name=name, bytes=length, url=url + name
    )


def _file(desk: Desk, account: str | None, name: str) -> FileResponse:
    path = _folder(desk, account) / name
    if not path.is_file():
        raise ApiError(404, f"no DUMPLOG file {name}")
    return FileResponse(path, media_type="application/xml")


@router.post("/daytrade/dumplog", response_model=m.DumpOut)
async def dumplog(body: m.DumpRequest, caller: Account, desk: DeskDep) -> m.DumpOut:
    """DUMPLOG (user form): the account's audit log, written as a file of its own; download
    it from the answer's url."""
    return await _dump(desk, caller, body.filename, "/daytrade/dumplog/")


@router.get("/daytrade/dumplog/{name}", response_class=FileResponse, responses=XML_FILE)
async def dumplog_file(name: DumpName, caller: Account, desk: DeskDep) -> FileResponse:
    """A DUMPLOG file this account wrote over HTTP."""
    return _file(desk, caller.account, name)


@admin_router.post("/admin/dumplog", response_model=m.DumpOut)
async def admin_dumplog(body: m.DumpRequest, caller: Admin, desk: DeskDep) -> m.DumpOut:
    """DUMPLOG (admin form): every user's audit log, into the dump directory."""
    return await _dump(desk, caller, body.filename, "/admin/dumplog/")


@admin_router.get("/admin/dumplog/{name}", response_class=FileResponse, responses=XML_FILE)
async def admin_dumplog_file(name: DumpName, caller: Admin, desk: DeskDep) -> FileResponse:
    """A DUMPLOG file of the dump directory (the admin's, and the line protocol's)."""
    return _file(desk, None, name)
