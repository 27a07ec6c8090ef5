"""Running a processor core as a service: `python -m services.{ledger,matcher,engine} serve`.

One way for every processor to start: the log format, the metrics endpoint, the EOS loop
(processor.py) and its pacing, each knob overridable as ``MARKETLOG_<NAME>_<KNOB>`` (tests and
benchmarks tune them; the defaults each service passes suit production).
"""

from __future__ import annotations

import faulthandler
import logging
import os
import signal
from collections.abc import Callable

from .config import Settings
from .metrics import serve_metrics
from .processor import Core, Processor

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def serve_processor(
    name: str,
    core: Callable[[Settings], Core],
    *,
    batch_records: int,
    txn_interval_ms: float,
    snapshot_records: int = 50_000,
    snapshot_seconds: float = 30.0,
) -> int:
    """Run `core` in the EOS loop until stopped. `name` prefixes the knobs and names the log."""
    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT)
    faulthandler.register(signal.SIGUSR1, all_threads=True)  # `kill -USR1`: stacks to the log
    settings = Settings()
    serve_metrics(name)

    def knob(key: str, default: float) -> float:
        return float(os.environ.get(f"MARKETLOG_{name.upper()}_{key}", default))

    logging.getLogger(f"services.{name}").info("%s %s starting", name, settings.instance)
    Processor(
        core(settings),
        settings,
        batch_records=int(knob("BATCH_RECORDS", batch_records)),
        batch_interval=knob("TXN_INTERVAL_MS", txn_interval_ms) / 1000,
        snapshot_records=int(knob("SNAPSHOT_RECORDS", snapshot_records)),
        snapshot_seconds=knob("SNAPSHOT_SECONDS", snapshot_seconds),
    ).run()
    return 0
