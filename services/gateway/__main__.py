"""`python -m services.gateway serve`: the XML/TCP and HTTP servers in one event loop."""

from __future__ import annotations

import logging
import sys

from .service import main

if __name__ == "__main__":
    if sys.argv[1:] != ["serve"]:
        sys.exit("usage: python -m services.gateway serve")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s gateway %(levelname)s %(message)s")
    main()
