"""python -m services.quotes serve

The simulated legacy quote server; settings from the environment (MARKETLOG_QUOTE_HOST, _PORT,
_SEED, _DELAY_MS, _BUCKET_MS; see docs/daytrading.md).
"""

from __future__ import annotations

import argparse
import logging
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m services.quotes")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("serve", help="run the quote server (settings from the environment)")
    parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s quotes %(levelname)s %(message)s")
    from .server import main as serve_main

    try:
        return serve_main()
    except (OSError, ValueError) as exc:
        sys.exit(f"quote server: {exc}")


if __name__ == "__main__":
    sys.exit(main())
