"""Public market data (no key; a token bucket per client address): an L2 book and recent
trades, as the projection shows them now (public reads wait on nobody's writes)."""

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query

from services.common.money import format_price, format_qty

from . import models as m
from .dependencies import DeskDep, public
from .errors import ApiError

router = APIRouter(tags=["market"], dependencies=[Depends(public)])


@router.get("/markets/{symbol}/book", response_model=m.BookOut)
async def book(
    symbol: Annotated[str, Path(pattern=m.SYMBOL)],
    desk: DeskDep,
    depth: Annotated[int, Query(ge=1, le=1000)] = 50,
) -> m.BookOut:
    """L2: the open quantity at each price, best first, and the sequence it reflects."""
    found = await desk.book(symbol, depth)
    if found is None:
        raise ApiError(404, f"unknown symbol {symbol}")
    seq, levels = found
    out = {"BUY": [], "SELL": []}
    for r in levels:
        out[r["side"]].append(m.Level(price=format_price(r["price"]), qty=format_qty(r["qty"])))
    return m.BookOut(symbol=symbol, seq=seq, bids=out["BUY"], asks=out["SELL"])


@router.get("/markets/{symbol}/trades", response_model=list[m.TradeOut])
async def trades(
    symbol: Annotated[str, Path(pattern=m.SYMBOL)],
    desk: DeskDep,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> list[m.TradeOut]:
    """Recent trades, newest first."""
    rows = await desk.trades(symbol, limit)
    if not rows and not await desk.knows_symbol(symbol):
        raise ApiError(404, f"unknown symbol {symbol}")
    return [
        m.TradeOut(
            seq=r["seq"],
            price=format_price(r["price"]),
            qty=format_qty(r["qty"]),
            taker_side=r["taker_side"],
            ts=r["ts"],
        )
        for r in rows
    ]
