"""`python -m services.projector {serve,rebuild,audit,migrate}` (settings from the environment).

serve    consume account.events and market.events into the projection tables
rebuild  replay both topics from offset zero into a fresh schema, then swap it in
audit    conservation and hold checks; exits 1 naming each culprit
migrate  apply pending schema migrations and exit
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys

from services.common.config import Settings
from services.common.gc_tuning import tune_for_service
from services.common.metrics import serve_metrics

from . import audit, schema, service


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m services.projector", description=__doc__)
    parser.add_argument("command", choices=["serve", "rebuild", "audit", "migrate"])
    parser.add_argument("--batch-records", type=int, help="most records per transaction")
    parser.add_argument("--batch-seconds", type=float, help="longest wait to fill a batch")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    settings = Settings()
    tune_for_service(young=100_000, middle=50)  # batches: short-lived tuples, no cycles
    if args.command == "serve":
        serve_metrics("projector")
        sizes = {"batch_records": args.batch_records, "batch_seconds": args.batch_seconds}
        projector = service.Projector(settings, **{k: v for k, v in sizes.items() if v})
        signal.signal(signal.SIGTERM, projector.stop)
        signal.signal(signal.SIGINT, projector.stop)
        projector.serve()
        return 0
    if args.command == "rebuild":
        service.rebuild(settings, batch_records=args.batch_records or 20_000)
        return 0
    if args.command == "audit":
        passed, lines = audit.audit(settings.database_url)
        print("\n".join(lines))
        return 0 if passed else 1
    with schema.connect(settings.database_url) as conn:
        print("applied:", ", ".join(schema.migrate(conn)) or "nothing (up to date)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
