"""The line-protocol channels: the gateway's rooms beside ``xml/`` and ``http/``.

- the day-trading line protocol (port 12346, docs/daytrading.md): ``daytrade`` (the server) and
  ``daytrade_lines`` (framing and answers, pure): the 16 commands (ADD, QUOTE, BUY, COMMIT_BUY,
  ..., DUMPLOG, DISPLAY_SUMMARY), one per line, pipelined, answered per line in line order;
- the algorithmic traders' JSON-lines channels (docs/channels.md): ``private`` on 7001
  (createOrder / cancelOrder / login / cancelOnDisconnect / heartbeat in, executionReport out, a
  server heartbeat on an idle connection) and ``public`` on 7002 (snapshot, order book level
  updates, trades and the matcher's checksums, every message numbered); ``wire`` parses and
  renders their lines (pure), ``public_feed`` folds one symbol's tape into the public messages
  (pure), ``wire_lines`` is the line-server shell both share (bounded lines, rate limit, slow
  readers, the heartbeat sweep).

A channel is a surface like ``xml/`` and ``http/``: a server that reads its own framing, parses a
line into plain values (pure, unit-tested without a socket), and answers through the ``Desk``
(``services/gateway/desk.py``) and nothing else: the desk appends commands and hands back their
decisions (``place_order``, ``cancel_order``, ...), reads after the caller's writes (``order``,
``orders``, ``balance``, ...), and streams what the log says (``decisions_about`` an account, the
``tape_of`` a symbol, with ``book_view`` for a snapshot; ``market_view.BookView`` folds the tape
into L2 levels). Every server starts beside the others in ``service.serve``; the day-trading
settings are in ``config.GatewaySettings`` (its address in ``services.common.config``), the JSON
channels' in ``config.ChannelSettings``.
"""
