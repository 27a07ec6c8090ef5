"""The projector: account.events and market.events into PostgreSQL tables, exactly once.

See docs/projector.md for the tables, the applied-offsets contract readers rely on, rebuild and
audit.
"""
