"""Random traffic clients for the private channel: ``python -m services.clients -n N``."""
