"""The line-protocol channels: the gateway's next rooms, empty until their issues build them.

- the day-trading line protocol (port 12346, ``daytrade``; framing and answers in
  ``daytrade_lines``): the 16 commands (ADD, QUOTE, BUY, COMMIT_BUY, ..., DUMPLOG,
  DISPLAY_SUMMARY), one per line, pipelined, answered per line in line order;
- the algorithmic traders' JSON-lines channels: private on 7001 (createOrder / cancelOrder in,
  executionReport out) and public on 7002 (order book level updates and trades).

A channel is a surface like ``xml/`` and ``http/``: a server that reads its own framing, parses a
line into plain values (pure, unit-tested without a socket), and answers through the ``Desk``
(``services/gateway/desk.py``) and nothing else: the desk appends commands and hands back their
decisions (``place_order``, ``cancel_order``, ...), reads after the caller's writes (``order``,
``balance``, ...), and streams what the log says (``decisions_about`` an account, the ``tape_of``
a symbol, with ``book_view`` for a snapshot; ``market_view.BookView`` folds the tape into L2
levels). Its server starts beside the others in ``service.serve``, and its settings join
``config.GatewaySettings``.
"""
