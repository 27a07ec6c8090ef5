"""The whole exchange in one process, without Kafka or PostgreSQL: for tests and benchmarks only.

Nothing under services/ imports this package; it imports the services' own cores so that what it
runs is what the services run (docs/testing.md).

- ``log``: an in-memory log — topics of partitions of keyed records at offsets, partitioned by
  Kafka's murmur2 as the product's producers do.
- ``pipeline``: ``Pipeline``, the real ledger and matcher cores (the ``Core`` objects their Kafka
  shells run, bytes in, bytes out) and the projector's row fold over that log, in a delivery
  order the caller chooses; batches commit atomically, crashes restore from snapshot + replay.
- ``projection``: the projection tables in memory (what the store's SQL does with a batch).
- ``invariants``: every invariant of the architecture page, checked over a pipeline.
- ``simulation``: seeded gateways and traders (``random_session``); ``simulate``: the
  deterministic simulation (``make simulate``, tests/unit/test_simulation.py).
- ``history``: readable, settled command-by-command histories and long seeded ones (``Market``,
  ``random_history``) for the projector's tests and benchmark; ``records``: ledger input
  builders; ``audit``: the ledger's per-partition invariants.
"""
