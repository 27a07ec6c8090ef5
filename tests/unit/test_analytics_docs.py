"""docs/analytics.md's example consumer decodes every record type, every released version, with
`schemas/` alone, exactly as the repository's codec does."""

from __future__ import annotations

import os
import re
from pathlib import Path

from services.common.codec import SAMPLE_DIR, Codec

ROOT = Path(__file__).resolve().parents[2]


def example() -> dict:
    text = (ROOT / "docs" / "analytics.md").read_text()
    code = re.search(r"<!-- example-consumer -->\n```python\n(.*?)```", text, re.S).group(1)
    namespace = {"__name__": "example"}
    cwd = os.getcwd()
    os.chdir(ROOT)  # the example reads ./schemas, as a consumer run from a checkout does
    try:
        exec(compile(code, "docs/analytics.md", "exec"), namespace)
    finally:
        os.chdir(cwd)
    return namespace


def test_example_consumer_decodes_every_sample_as_the_codec_does():
    decode, codec = example()["decode"], Codec()
    samples = sorted(SAMPLE_DIR.glob("*.avro"))
    assert len(samples) > 40
    for path in samples:
        value = path.read_bytes()
        name, record = decode(value)
        assert name == path.name.split("-")[0]
        if codec.fingerprint(name) == value[2:10]:  # the current version: same dict
            assert (name, record) == codec.decode(value)


def test_example_consumer_decodes_a_trade_and_a_candle():
    decode, codec = example()["decode"], Codec()
    env = {"command_id": "c1", "key": "ABC", "ts": 1_800_000_000_000_000, "reply_to": ""}
    trade = {"envelope": env, "seq": 7, "price": 1_012_500, "qty": 300, "maker_order_id": 1,
             "taker_order_id": 2, "taker_side": "BUY", "maker_remaining": 0,
             "taker_remaining": 0}  # fmt: skip
    assert decode(codec.encode("marketlog.market.Trade", trade)) == (
        "marketlog.market.Trade",
        trade,
    )
    candle = {"envelope": env, "seq": 7, "interval": "1m", "start": 1_800_000_000_000,
              "open": 1, "high": 2, "low": 1, "close": 2, "volume": 3, "notional": 5, "vwap": 2,
              "trades": 2, "volume_24h": 3}  # fmt: skip
    name, record = decode(codec.encode("marketlog.analytics.CandleUpdated", candle))
    assert (name, record) == ("marketlog.analytics.CandleUpdated", candle)
