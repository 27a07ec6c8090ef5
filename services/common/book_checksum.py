"""The order-book checksum the matcher publishes and every replica computes (pure, stdlib only).

Like Kraken's and OKX's book checksums: CRC32 (zlib, unsigned) over a string of the top
``DEPTH`` levels per side, in exchange units (services.common.money), so no decimal formatting
can differ between writer and reader::

    bid price ":" bid qty ":" ask price ":" ask qty ":" ...   (level 1, level 2, ... level 10)

Levels interleave best first (best bid, best ask, second bid, second ask, ...); a side with fewer
levels simply stops contributing (OKX's rule). Prices are integers of 0.0001, quantities of 0.01
share, each the total open quantity at that price. An empty book is the empty string: CRC 0.

Example: bids 145.00 × 100 and 144.00 × 300, asks 146.50 × 20 →
``"1450000:10000:1465000:2000:1440000:30000"``.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable

DEPTH = 10

Levels = Iterable[tuple[int, int]]  # (price, qty), best first


def checksum_text(bids: Levels, asks: Levels, depth: int = DEPTH) -> str:
    bid_list, ask_list = list(bids)[:depth], list(asks)[:depth]
    parts: list[str] = []
    for i in range(max(len(bid_list), len(ask_list))):
        for side in (bid_list, ask_list):
            if i < len(side):
                parts.append(f"{side[i][0]}:{side[i][1]}")
    return ":".join(parts)


def checksum(bids: Levels, asks: Levels, depth: int = DEPTH) -> int:
    """CRC32 of ``checksum_text``, as an unsigned 32-bit integer."""
    return zlib.crc32(checksum_text(bids, asks, depth).encode()) & 0xFFFFFFFF
