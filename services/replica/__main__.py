"""``python -m services.replica {l3,l2}``: keep every order book and check it against the matcher's
checksums; print a JSON summary per book at the end (exit 1 on any mismatch).

    python -m services.replica l3 [--symbol S ...] [--duration S] [--idle S]
    python -m services.replica l2 [--port 7002] [--symbol S ...] [--duration S] [--idle S]

``--lose N`` drops the N-th record (l3) or message (l2) once: a fault injected to show gap
detection and resynchronisation.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys

from services.common.config import Settings


def _args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m services.replica", description=__doc__)
    parser.add_argument("kind", choices=("l3", "l2"))
    parser.add_argument("--symbol", action="append", default=[], help="books to keep (l3: all)")
    parser.add_argument("--host", default=os.environ.get("MARKETLOG_CHANNEL_HOST", "127.0.0.1"))
    parser.add_argument(
        "--port", type=int, default=int(os.environ.get("MARKETLOG_PUBLIC_PORT", "7002"))
    )
    parser.add_argument("--duration", type=float, help="stop after this many seconds")
    parser.add_argument("--idle", type=float, help="stop after this many seconds without news")
    parser.add_argument("--lose", type=int, default=0, help="drop the N-th record once (a test)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = _args(argv)
    if args.duration is None and args.idle is None:
        args.idle = 5.0
    if args.kind == "l3":
        from .kafka import L3Replica

        l3 = L3Replica(Settings(), set(args.symbol) or None, args.lose)
        l3.start()
        try:
            l3.run(args.duration, args.idle)
        finally:
            l3.close()
        summary = l3.summary()
    else:
        from .channel import L2Replica

        l2 = L2Replica(args.host, args.port, args.symbol, args.lose)
        asyncio.run(l2.run(args.duration, args.idle))
        summary = l2.summary()
    print(json.dumps(summary, sort_keys=True), flush=True)
    bad = any(book["mismatches"] for book in summary["books"].values())
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
