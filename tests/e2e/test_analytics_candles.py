"""GET /markets/{symbol}/candles through the whole running system: trades made over HTTP reach
the analytics app, its candle updates the projection, and the endpoint answers the candle with
the API's decimal strings (docs/analytics.md)."""

from __future__ import annotations

import httpx
import pytest

from .test_gateway_http import bearer, new_account, new_symbol
from .xml_client import wait_for

pytestmark = pytest.mark.e2e


def test_trades_become_candles_served_over_http(system):
    with httpx.Client(base_url=system.http_url, timeout=30) as http:
        symbol = new_symbol(http, system)
        seller, seller_key = new_account(http, system)
        _, buyer_key = new_account(http, system, "1000")
        issued = http.post(
            f"/symbols/{symbol}/issue",
            json={"account_id": seller, "qty": "20"},
            headers=bearer(system.admin_key),
        )
        assert issued.status_code == 200, issued.text
        assert http.get(f"/markets/{symbol}/candles").json() == []  # listed, nothing traded
        for qty, price in (("4", "3"), ("6", "3.5"), ("2.5", "2.75")):
            ask = {"symbol": symbol, "side": "SELL", "qty": qty, "price": price}
            placed = http.post("/orders", json=ask, headers=bearer(seller_key))
            assert placed.status_code == 201, placed.text
            bid = {"symbol": symbol, "side": "BUY", "qty": qty, "price": "5"}
            matched = http.post(
                "/orders", json=bid, params={"wait": "matched"}, headers=bearer(buyer_key)
            )
            assert matched.status_code == 201, matched.text
            assert matched.json()["detail"]["executed_qty"] == qty
        # the public tape reads the projection, with no session to wait on: wait for it
        trades = wait_for(
            lambda: len(t := http.get(f"/markets/{symbol}/trades").json()) == 3 and t, timeout=30
        )
        assert trades and len(trades) == 3

        def candles(interval: str) -> list[dict] | None:
            got = http.get(f"/markets/{symbol}/candles", params={"interval": interval}).json()
            return got if sum(c["trades"] for c in got) == 3 else None

        minutes = wait_for(lambda: candles("1m"), timeout=30)
        seconds = wait_for(lambda: candles("1s"), timeout=30)
        assert minutes and seconds, "the trades never showed as candles"
    # 4 @ 3, 6 @ 3.5, 2.5 @ 2.75: notional 39.875 over 12.5 shares = 3.19
    if len(minutes) == 1:  # the three trades fell in one minute (almost always)
        (candle,) = minutes
        assert candle["interval"] == "1m" and candle["start"] % 60_000 == 0
        assert (candle["open"], candle["high"], candle["low"], candle["close"]) == (
            "3",
            "3.5",
            "2.75",
            "2.75",
        )
        assert (candle["volume"], candle["qty"], candle["vwap"]) == (12, "12.5", "3.19")
        assert candle["volume_24h"] == "12.5"
    assert [c["start"] for c in seconds] == sorted(c["start"] for c in seconds)  # newest last
    assert all(c["interval"] == "1s" and c["start"] % 1000 == 0 for c in seconds)
    first_trade_ms = min(t["ts"] for t in trades) // 1000
    assert seconds[0]["start"] == first_trade_ms - first_trade_ms % 1000
    with httpx.Client(base_url=system.http_url, timeout=30) as http:
        assert http.get("/markets/NOPE0000/candles").status_code == 404
        assert http.get(f"/markets/{symbol}/candles", params={"interval": "5m"}).status_code in (
            400,
            422,
        )
        one = http.get(f"/markets/{symbol}/candles", params={"interval": "1s", "limit": 1}).json()
        assert one == seconds[-1:]
