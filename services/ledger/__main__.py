"""`python -m services.ledger serve|verify`: run the ledger, or audit its log (see verify.py).

Settings come from the environment (services.common.config).
"""

from __future__ import annotations

import sys

from services.common.serve import serve_processor

from .service import LedgerCore

USAGE = "usage: python -m services.ledger serve|verify"


def main(argv: list[str]) -> int:
    if argv == ["verify"]:
        from .verify import main as verify

        return verify()
    if argv != ["serve"]:
        print(USAGE, file=sys.stderr)
        return 2
    return serve_processor(
        "ledger",
        LedgerCore,
        # answers wait on the ledger's commit: no pacing beyond the commit gap
        batch_records=2000,
        txn_interval_ms=0,
    )


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
