"""Public candles (no key, like the other /markets reads): what the analytics app computed
(docs/analytics.md), as the projection's ``candles`` table holds it, for the UI's chart."""

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Path, Query
from pydantic import BaseModel, Field

from services.common.money import QTY_SCALE, format_price, format_qty

from . import models as m
from .dependencies import DeskDep, public
from .errors import ApiError

router = APIRouter(tags=["market"], dependencies=[Depends(public)])


class CandleOut(BaseModel):
    start: int = Field(description="Start of the window, ms since the epoch.")
    interval: Literal["1s", "1m"]
    open: str
    high: str
    low: str
    close: str
    volume: int = Field(description="Shares traded, whole shares (rounded down); exact in qty.")
    qty: str = Field(description="Shares traded, exact (a quantity decimal string).")
    vwap: str = Field(description="Volume-weighted average price, rounded half up to 0.0001.")
    trades: int
    volume_24h: str = Field(
        description="Shares traded in the 1,440 minutes up to this candle's last trade."
    )


@router.get("/markets/{symbol}/candles", response_model=list[CandleOut])
async def candles(
    symbol: Annotated[str, Path(pattern=m.SYMBOL)],
    desk: DeskDep,
    interval: Annotated[Literal["1s", "1m"], Query()] = "1m",
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[CandleOut]:
    """The newest `limit` candles of an interval, oldest first (newest last)."""
    rows = await desk.candles(symbol, interval, limit)
    if not rows and not await desk.knows_symbol(symbol):
        raise ApiError(404, f"unknown symbol {symbol}")
    return [
        CandleOut(
            start=r["start_ms"],
            interval=r["interval"],
            open=format_price(r["open"]),
            high=format_price(r["high"]),
            low=format_price(r["low"]),
            close=format_price(r["close"]),
            volume=r["volume"] // QTY_SCALE,
            qty=format_qty(r["volume"]),
            vwap=format_price(r["vwap"]),
            trades=r["trades"],
            volume_24h=format_qty(r["volume_24h"]),
        )
        for r in reversed(rows)
    ]
