"""The workload generator: replays a course workload file against the day-trading line protocol
(docs/daytrading.md, *Workload generator* and *Line protocol*). ``python -m services.workload``."""
