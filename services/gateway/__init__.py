"""The gateway: the exchange's surfaces in front of the log (see docs/gateway.md). One room per
surface (``xml/``, ``http/``, ``channels/``); what they share stands at the root, behind the
``desk.Desk``."""
