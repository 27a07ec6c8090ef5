"""`python -m services.engine serve|verify`: run the engine (ledger and matcher in one hop), or
audit its log (verify.py). Settings come from the environment (services.common.config)."""

from __future__ import annotations

import logging
import os
import sys

from services.common.config import Settings
from services.common.metrics import serve_metrics
from services.common.processor import Processor

from .service import EngineCore

USAGE = "usage: python -m services.engine serve|verify"


def main(argv: list[str]) -> int:
    if argv == ["verify"]:
        from .verify import main as verify

        return verify()
    if argv != ["serve"]:
        print(USAGE, file=sys.stderr)
        return 2
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    settings = Settings()
    serve_metrics("engine")
    env = os.environ.get
    processor = Processor(
        EngineCore(settings),
        settings,
        batch_records=int(env("MARKETLOG_ENGINE_BATCH_RECORDS", "2000")),
        # answers wait on this commit: no pacing beyond the commit gap
        batch_interval=float(env("MARKETLOG_ENGINE_TXN_INTERVAL_MS", "0")) / 1000,
        snapshot_records=int(env("MARKETLOG_ENGINE_SNAPSHOT_RECORDS", "50000")),
    )
    processor.run()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
