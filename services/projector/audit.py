"""`python -m services.projector audit`: conservation and hold checks over the projections.

All checks read one consistent snapshot (REPEATABLE READ). Each projected partition is a prefix
of the log, and every fact a check compares (an account's balances, its executions, its orders)
comes from that account's partition, so the checks hold at any applied offset, not only when the
projector has caught up. Each violation names its culprit; any violation fails the audit.
"""

from __future__ import annotations

from dataclasses import dataclass

import psycopg

from services.common.money import format_cash, format_price, format_qty

from . import schema

_EXEC_CASH = """
SELECT account_id,
       sum(CASE WHEN side = 'SELL' THEN price::numeric * qty ELSE 0 END) AS earned,
       sum(CASE WHEN side = 'BUY' THEN price::numeric * qty ELSE 0 END) AS spent
FROM executions GROUP BY account_id
"""

_EXEC_SHARES = """
SELECT account_id, symbol,
       sum(CASE WHEN side = 'BUY' THEN qty ELSE 0 END)::numeric AS bought,
       sum(CASE WHEN side = 'SELL' THEN qty ELSE 0 END)::numeric AS sold
FROM executions GROUP BY account_id, symbol
"""

# Both fills of each trade, side by side. A trade whose two fills are on different account
# partitions can have only one of them projected yet: the totals count such halves explicitly,
# so the audit holds on a live system too, not only once everything is settled.
_PAIRS = """
SELECT symbol, seq,
       count(*) FILTER (WHERE side = 'BUY') AS nb, count(*) FILTER (WHERE side = 'SELL') AS ns,
       sum(qty) FILTER (WHERE side = 'BUY') AS bq, sum(qty) FILTER (WHERE side = 'SELL') AS sq,
       min(price) AS lo, max(price) AS hi,
       sum(CASE WHEN side = 'SELL' THEN price::numeric * qty ELSE 0 END) AS earned,
       sum(CASE WHEN side = 'BUY' THEN price::numeric * qty ELSE 0 END) AS spent
FROM executions GROUP BY symbol, seq
"""


# Cash that came in from outside the exchange's books minus what went out, per balances row b:
# deposits and day-trading ADDs, withdrawals, what was paid to the day-trading market (COMMIT_BUY,
# buy triggers) and received from it (COMMIT_SELL, sell triggers): docs/daytrading.md.
_NET_IN = "b.deposited + b.daytrade_added - b.withdrawn - b.daytrade_paid + b.daytrade_received"

# Per account, the day-trading audit entries' accountTransaction adds minus removes: the change
# of available cash that day trading made (docs/daytrading.md, *Audit log*).
_DT_CASH_ENTRIES = """
SELECT username AS account_id,
       sum(CASE WHEN action = 'add' THEN funds ELSE -funds END)::numeric AS net
FROM audit_entries WHERE kind = 2 GROUP BY username
"""


@dataclass(frozen=True)
class Check:
    name: str
    query: str
    message: str  # format string over the query's columns


CHECKS = [
    Check(
        "cash per account",
        f"""WITH ex AS ({_EXEC_CASH})
        SELECT a.account_id,
               a.initial_balance + coalesce({_NET_IN}, 0)
                 + coalesce(ex.earned, 0) - coalesce(ex.spent, 0) AS expected,
               coalesce(b.available + b.held, 0) AS actual
        FROM accounts a LEFT JOIN balances b USING (account_id) LEFT JOIN ex USING (account_id)
        WHERE a.initial_balance + coalesce({_NET_IN}, 0)
                + coalesce(ex.earned, 0) - coalesce(ex.spent, 0)
              IS DISTINCT FROM coalesce(b.available + b.held, 0)
        ORDER BY 1""",
        "account {0}: cash deposited - paid out + sales - purchases (day trading included)"
        " = {1:cash}, but available + held = {2:cash}",
    ),
    Check(
        "fills pair up",
        f"""SELECT symbol, seq, nb, ns, bq, sq, lo, hi FROM ({_PAIRS}) p
        WHERE nb > 1 OR ns > 1 OR (nb = 1 AND ns = 1 AND (bq <> sq OR lo <> hi)) ORDER BY 1, 2""",
        "symbol {0} trade {1}: {2} buy and {3} sell fills, quantities {4:qty}/{5:qty},"
        " prices {6:price}/{7:price}",
    ),
    Check(
        "cash in total",
        f"""WITH half AS (SELECT coalesce(sum(earned - spent), 0) AS net FROM ({_PAIRS}) p
                         WHERE nb + ns = 1),
        t AS (SELECT (SELECT coalesce(sum(initial_balance), 0) FROM accounts)
                     + (SELECT coalesce(sum({_NET_IN}), 0) FROM balances b) AS paid_in,
                     (SELECT coalesce(sum(available + held), 0) FROM balances) AS actual)
        SELECT paid_in, half.net, actual FROM t, half WHERE paid_in + half.net <> actual""",
        "total: cash deposited - paid out = {0:cash} (+ {1:cash} from trades whose other side"
        " is not projected yet), but available + held = {2:cash}",
    ),
    Check(
        "balances never negative",
        """SELECT account_id, available, held, daytrade_held FROM balances
        WHERE available < 0 OR held < 0 OR daytrade_held < 0 OR daytrade_held > held
        ORDER BY 1""",
        "account {0}: negative cash (available {1:cash}, held {2:cash},"
        " of it day trading {3:cash})",
    ),
    Check(
        "balances belong to accounts",
        "SELECT account_id FROM balances EXCEPT SELECT account_id FROM accounts ORDER BY 1",
        "account {0}: has a balance but was never created",
    ),
    Check(
        "shares per account and symbol",
        f"""WITH ex AS ({_EXEC_SHARES})
        SELECT account_id, symbol,
               coalesce(p.issued, 0) + coalesce(ex.bought, 0) - coalesce(ex.sold, 0) AS expected,
               coalesce(p.available + p.held, 0) AS actual
        FROM positions p FULL JOIN ex USING (account_id, symbol)
        WHERE coalesce(p.issued, 0) + coalesce(ex.bought, 0) - coalesce(ex.sold, 0)
              <> coalesce(p.available + p.held, 0)
        ORDER BY 1, 2""",
        "account {0} symbol {1}: issued + bought - sold = {2:qty}, but available + held = {3:qty}",
    ),
    Check(
        "shares per symbol",
        f"""WITH half AS (SELECT symbol, sum(coalesce(bq, 0) - coalesce(sq, 0)) AS net
                         FROM ({_PAIRS}) p WHERE nb + ns = 1 GROUP BY symbol),
        pos AS (SELECT symbol, sum(issued) AS issued, sum(available + held) AS actual
                FROM positions GROUP BY symbol)
        SELECT symbol, pos.issued, coalesce(half.net, 0), pos.actual
        FROM pos LEFT JOIN half USING (symbol)
        WHERE pos.issued + coalesce(half.net, 0) <> pos.actual ORDER BY 1""",
        "symbol {0}: {1:qty} shares issued (+ {2:qty} from trades whose other side is not"
        " projected yet), but available + held = {3:qty}",
    ),
    Check(
        "positions never negative",
        """SELECT account_id, symbol, available, held FROM positions
        WHERE available < 0 OR held < 0 ORDER BY 1, 2""",
        "account {0} symbol {1}: negative shares (available {2:qty}, held {3:qty})",
    ),
    Check(
        "cash held = open buy orders' holds + day trading's",
        """WITH o AS (SELECT account_id, sum(hold) AS holds FROM orders
                     WHERE side = 'BUY' AND open_qty > 0 GROUP BY account_id)
        SELECT account_id, b.held, coalesce(o.holds, 0), coalesce(b.daytrade_held, 0)
        FROM balances b FULL JOIN o USING (account_id)
        WHERE coalesce(b.held, 0) <> coalesce(o.holds, 0) + coalesce(b.daytrade_held, 0)
        ORDER BY 1""",
        "account {0}: cash held {1:cash}, but its open buy orders hold {2:cash} and its"
        " pending BUYs and buy reserves {3:cash}",
    ),
    Check(
        "shares held = open sell orders' holds",
        """WITH o AS (SELECT account_id, symbol, sum(hold) AS holds FROM orders
                     WHERE side = 'SELL' AND open_qty > 0 GROUP BY account_id, symbol)
        SELECT account_id, symbol, p.held, coalesce(o.holds, 0)
        FROM positions p FULL JOIN o USING (account_id, symbol)
        WHERE coalesce(p.held, 0) <> coalesce(o.holds, 0) ORDER BY 1, 2""",
        "account {0} symbol {1}: shares held {2:qty}, but its open sell orders hold {3:qty}",
    ),
    Check(
        "each open order's hold",
        """SELECT order_id, account_id, side, price, open_qty, hold,
                  CASE WHEN side = 'SELL' THEN open_qty ELSE price * open_qty END AS due
        FROM orders
        WHERE open_qty > 0 AND CASE
            WHEN side = 'SELL' THEN hold <> open_qty
            WHEN price IS NULL THEN hold < 0 OR hold > budget
            ELSE hold <> price * open_qty END
        ORDER BY 1""",
        "order {0} (account {1}, {2} {4:qty} open at {3:price}): holds {5}, should hold {6}",
    ),
    Check(
        "order quantities add up",
        """SELECT order_id, qty, open_qty, executed_qty, cancelled_qty, reduced_qty FROM orders
        WHERE qty <> open_qty + executed_qty + cancelled_qty + reduced_qty
           OR least(open_qty, executed_qty, cancelled_qty, reduced_qty) < 0 ORDER BY 1""",
        "order {0}: qty {1:qty} <> open {2:qty} + executed {3:qty} + cancelled {4:qty}"
        " + reduced {5:qty}",
    ),
    Check(
        "orders match their executions",
        """WITH e AS (SELECT order_id, sum(qty) AS qty, sum(price::numeric * qty) AS notional
                     FROM executions GROUP BY order_id)
        SELECT order_id, o.executed_qty, e.qty FROM orders o FULL JOIN e USING (order_id)
        WHERE o.executed_qty IS DISTINCT FROM coalesce(e.qty, 0)
           OR o.executed_notional IS DISTINCT FROM coalesce(e.notional, 0) ORDER BY 1""",
        "order {0}: executed {1} in orders, but its executions add up to {2}",
    ),
    Check(
        "day-trading cash entries",
        f"""WITH e AS ({_DT_CASH_ENTRIES})
        SELECT account_id, coalesce(e.net, 0),
               coalesce(b.daytrade_added - b.daytrade_paid + b.daytrade_received
                        - b.daytrade_held, 0) AS moved
        FROM balances b FULL JOIN e USING (account_id)
        WHERE coalesce(e.net, 0) <> coalesce(b.daytrade_added - b.daytrade_paid
                                             + b.daytrade_received - b.daytrade_held, 0)
        ORDER BY 1""",
        "account {0}: its accountTransaction entries add up to {1:cash}, but ADDs - paid"
        " + received - still held by day trading = {2:cash}",
    ),
    Check(
        "day-trading shares",
        """SELECT account_id, sum(bought), sum(sold) FROM daytrade_shares GROUP BY account_id
        HAVING sum(sold) > sum(bought) OR min(least(bought, sold)) < 0 ORDER BY 1""",
        "account {0}: sold {2} day-trading shares to the market but bought {1}",
    ),
    Check(
        "day-trading rows belong to accounts",
        """SELECT account_id, 'trigger' FROM daytrade_triggers
           EXCEPT SELECT account_id, 'trigger' FROM accounts
        UNION ALL (SELECT account_id, 'shares' FROM daytrade_shares
           EXCEPT SELECT account_id, 'shares' FROM accounts) ORDER BY 1, 2""",
        "account {0}: has day-trading {1} rows but was never created",
    ),
    Check(
        "books do not cross",
        """SELECT symbol, max(price) FILTER (WHERE side = 'BUY'),
                  min(price) FILTER (WHERE side = 'SELL')
        FROM book_levels GROUP BY symbol
        HAVING max(price) FILTER (WHERE side = 'BUY') >= min(price) FILTER (WHERE side = 'SELL')
            OR min(qty) <= 0
        ORDER BY 1""",
        "symbol {0}: book crossed or holds an empty level (best bid {1}, best ask {2})",
    ),
]


class _Units:
    """Formats integer units for people: `{0:cash}`, `{0:qty}`, `{0:price}`."""

    def __init__(self, value: object) -> None:
        self.value = value

    def __format__(self, spec: str) -> str:
        formatter = {"cash": format_cash, "qty": format_qty, "price": format_price}.get(spec)
        if formatter is None or self.value is None:
            return str(self.value)
        return formatter(int(self.value))


def run_checks(conn: psycopg.Connection) -> list[str]:
    """Every violation, one line each, naming its culprit; empty when the books balance."""
    violations = []
    with conn.transaction():
        conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        for check in CHECKS:
            for row in conn.execute(check.query).fetchall():
                text = check.message.format(*(_Units(v) for v in row))
                violations.append(f"{check.name}: {text}")
    return violations


def summary(conn: psycopg.Connection) -> str:
    counts = {
        table: conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
        for table in (
            "accounts",
            "symbols",
            "orders",
            "executions",
            "trades",
            "audit_log",
            "audit_entries",
        )
    }
    return ", ".join(f"{n} {table}" for table, n in counts.items())


def audit(database_url: str, target: str = schema.LIVE) -> tuple[bool, list[str]]:
    with schema.connect(database_url, target) as conn:
        violations = run_checks(conn)
        lines = violations or [f"audit passed: {summary(conn)}, {len(CHECKS)} checks"]
    return not violations, lines
