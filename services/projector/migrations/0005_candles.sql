-- Issue 18: the analytics app's candles (analytics.candles, docs/analytics.md), for the UI chart
-- (GET /markets/{symbol}/candles). One row per (symbol, interval, start): the newest update
-- (highest seq) of that candle; an update at or below the stored seq changes nothing, so a
-- redelivered update is harmless. Prices in price units, volume in quantity units, notional in
-- cash units, start in ms since the epoch. UNLOGGED like every projection table (migration 0004).
CREATE UNLOGGED TABLE candles (
    symbol     text COLLATE "C" NOT NULL,
    interval   text COLLATE "C" NOT NULL,
    start_ms   bigint           NOT NULL,
    open       bigint           NOT NULL,
    high       bigint           NOT NULL,
    low        bigint           NOT NULL,
    close      bigint           NOT NULL,
    volume     bigint           NOT NULL,
    notional   bigint           NOT NULL,
    vwap       bigint           NOT NULL,
    trades     bigint           NOT NULL,
    seq        bigint           NOT NULL,
    volume_24h bigint           NOT NULL,
    PRIMARY KEY (symbol, interval, start_ms)
);
