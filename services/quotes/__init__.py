"""The simulated legacy quote server of the day-trading system (docs/daytrading.md).

Public API for other services: ``fetch_quote`` (async client), ``Quote`` and ``QuoteError``.
"""

from .client import fetch_quote
from .core import Quote, QuoteError

__all__ = ["Quote", "QuoteError", "fetch_quote"]
