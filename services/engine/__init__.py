"""The engine: the ledger's and the matcher's cores in one exactly-once processor (one hop)."""
