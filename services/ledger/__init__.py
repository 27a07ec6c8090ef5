"""The ledger: accounts, holds, order ids and settlement (core state.py, shell service.py)."""
