"""python -m services.analytics serve

The analytics stream (docs/analytics.md): candles, VWAP and rolling 24 h volume per symbol from
market.events to analytics.candles, exactly once. Settings from the environment
(services/common/config.py: KAFKA_BOOTSTRAP_SERVERS, MARKETLOG_TOPIC_PREFIX, ...).
"""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m services.analytics")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("serve", help="run the faust app (settings from the environment)")
    parser.parse_args(argv)
    from .service import serve

    sys.argv = sys.argv[:1]  # faust's Worker reads the command line: give it none of ours
    serve()
    return 0


if __name__ == "__main__":
    sys.exit(main())
