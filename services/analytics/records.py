"""The analytics app's records: a decoded Trade in, a CandleUpdated out (schemas/)."""

from __future__ import annotations

from services.common.codec import Codec

from .core import Trade, Update

TRADE = "marketlog.market.Trade"
CANDLE = "marketlog.analytics.CandleUpdated"


def trade_of(record: dict) -> Trade:
    env = record["envelope"]
    return Trade(env["key"], record["seq"], env["ts"], record["price"], record["qty"])


def encode_update(codec: Codec, u: Update) -> bytes:
    c = u.candle
    return codec.encode(
        CANDLE,
        {
            # the candle's own envelope: keyed by its symbol, stamped with the trade's time
            "envelope": {
                "command_id": f"{u.symbol}:{u.seq}",
                "key": u.symbol,
                "ts": u.ts,
                "reply_to": "",
            },
            "seq": u.seq,
            "interval": c.interval,
            "start": c.start,
            "open": c.open,
            "high": c.high,
            "low": c.low,
            "close": c.close,
            "volume": c.volume,
            "notional": c.notional,
            "vwap": c.vwap,
            "trades": c.trades,
            "volume_24h": u.volume_24h,
        },
    )
