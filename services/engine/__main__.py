"""`python -m services.engine serve|verify`: run the engine (ledger and matcher in one hop), or
audit its log (verify.py). Settings come from the environment (services.common.config)."""

from __future__ import annotations

import sys

from services.common.serve import serve_processor

from .service import EngineCore

USAGE = "usage: python -m services.engine serve|verify"


def main(argv: list[str]) -> int:
    if argv == ["verify"]:
        from .verify import main as verify

        return verify()
    if argv != ["serve"]:
        print(USAGE, file=sys.stderr)
        return 2
    return serve_processor(
        "engine",
        EngineCore,
        # answers wait on this commit: no pacing beyond the commit gap
        batch_records=2000,
        txn_interval_ms=0,
    )


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
