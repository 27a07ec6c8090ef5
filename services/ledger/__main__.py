"""`python -m services.ledger serve|verify`: run the ledger, or audit its log (see verify.py).

Settings come from the environment (services.common.config).
"""

from __future__ import annotations

import logging
import os
import sys

from services.common.config import Settings
from services.common.metrics import serve_metrics
from services.common.processor import Processor

from .service import LedgerCore

USAGE = "usage: python -m services.ledger serve|verify"


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
    serve_metrics("ledger")
    processor = Processor(
        LedgerCore(settings),
        settings,
        # tests and benchmarks tune these; the loop's defaults suit production
        batch_records=int(os.environ.get("MARKETLOG_LEDGER_BATCH_RECORDS", "2000")),
        # answers wait on the ledger's commit: no pacing beyond the commit gap
        batch_interval=float(os.environ.get("MARKETLOG_LEDGER_TXN_INTERVAL_MS", "0")) / 1000,
        snapshot_records=int(os.environ.get("MARKETLOG_LEDGER_SNAPSHOT_RECORDS", "50000")),
    )
    processor.run()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
