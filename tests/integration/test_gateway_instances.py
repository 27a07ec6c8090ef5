"""Two gateway instances over one log (issue 19): each decodes only the decisions someone there
needs — its own commands' answers, its subscribers' accounts, the directory's new accounts and
symbols — and reads the rest only to their envelope; every reply still arrives, and an account
followed on one gateway sees every decision about it, though the other gateway caused them all."""

from __future__ import annotations

import json
import re
from collections import Counter

import httpx
import pytest
from websockets.sync.client import connect as ws_connect

from infra.stack import gateway_ports
from services.common.codec import Codec
from services.common.config import Settings
from services.gateway.directory import Directory
from services.gateway.hearing import Event
from services.gateway.http.streams import order_message
from tests.integration.test_scale_out import xml_request
from tests.support import ServiceProcs, fresh_settings, read_all, wait_until

pytestmark = pytest.mark.integration
ADMIN = "test-admin-key"
ROUNDS = 6
HEARD = re.compile(r'^marketlog_gateway_decisions_heard_total\{read="(\w+)"\} (\S+)$', re.M)


def heard(metrics_port: int) -> Counter:
    """The gateway's decisions decoded and skipped so far, from its metrics endpoint."""
    text = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10).text
    return Counter({read: int(float(n)) for read, n in HEARD.findall(text)})


class Gateway:
    """One gateway instance on its own ports (no SO_REUSEPORT: a client picks the instance)."""

    def __init__(self, settings: Settings, tmp_path, instance: str) -> None:
        self.instance = instance
        ports, port_env = gateway_ports(metrics=True)
        self.xml, self.http, self.metrics = ports["xml"], ports["http"], ports["gateway_metrics"]
        self.procs = ServiceProcs(settings, tmp_path, MARKETLOG_ADMIN_KEY=ADMIN, **port_env)

    def start(self) -> None:
        self.procs.start(f"gateway@{self.instance}")

    def open_account(self) -> tuple[str, str]:
        made = httpx.post(
            f"http://127.0.0.1:{self.http}/accounts",
            json={"balance": "100000"},
            headers={"Authorization": f"Bearer {ADMIN}"},
            timeout=30,
        )
        assert made.status_code == 201, made.text
        return made.json()["account_id"], made.json()["api_key"]

    def follow(self, key: str):
        url = f"ws://127.0.0.1:{self.http}/ws/orders"
        return ws_connect(url, additional_headers={"Authorization": f"Bearer {key}"})


def order(gateway: Gateway, account: str, side: int, limit: int) -> bytes:
    body = f'<transactions id="{account}"><order sym="G" amount="{side}" limit="{limit}"/>'
    return xml_request(gateway.xml, (body + "</transactions>").encode())


def test_each_gateway_decodes_what_it_needs_and_a_follower_sees_every_decision(
    services, database_url, tmp_path
):
    settings = fresh_settings(services.kafka, database_url, tmp_path / "run", partitions=2)
    procs = ServiceProcs(settings, tmp_path)
    gateways = [Gateway(settings, tmp_path, "0"), Gateway(settings, tmp_path, "1")]
    try:
        procs.start("projector", "ledger", "matcher")
        for gateway in gateways:
            gateway.start()
        # each gateway hears from its start on. Decided by now: the default symbol's listing by
        # the first (the second started after it, and had its own answered before it was ready)
        topic = settings.topic("account.events")
        before = {(r.partition(), r.offset()) for r in read_all(settings, topic)}
        first = wait_until(
            lambda: (c := heard(gateways[0].metrics)).total() == len(before) and c,
            30,
            "the first gateway to hear the start's decisions",
        )
        baseline = [first, heard(gateways[1].metrics)]
        # a follower on each gateway, whose account trades only through the other gateway
        followed = [gateways[0].open_account(), gateways[1].open_account()]
        traders = [str(700 + i) for i in range(12)]
        body = "<create>" + "".join(f'<account id="{a}" balance="100000"/>' for a in traders)
        holders = traders + [account for account, _ in followed]
        body += '<symbol sym="G">' + "".join(f'<account id="{a}">1000</account>' for a in holders)
        assert b"<error" not in xml_request(gateways[1].xml, (body + "</symbol></create>").encode())

        with gateways[0].follow(followed[0][1]) as ws0, gateways[1].follow(followed[1][1]) as ws1:
            opened = sent = 0
            for round_ in range(ROUNDS):
                for n, account in enumerate(holders):
                    if account in (followed[0][0], followed[1][0]):
                        via = gateways[1] if account == followed[0][0] else gateways[0]
                    else:
                        via = gateways[(n + round_) % 2]
                    side = 1 if (n + round_) % 2 else -1
                    opened += b"<opened" in order(via, account, side, 10 + n % 3)
                    sent += 1
            assert opened == sent  # every reply arrived, from the gateway that was asked

            # an XML order is answered once placed and settled: the log holds every decision now
            codec = Codec()
            log = [
                Event(*codec.decode(r.value()), r.partition(), r.offset())
                for r in read_all(settings, topic)
                if (r.partition(), r.offset()) not in before
            ]
            for (account, _), ws in zip(followed, (ws0, ws1), strict=True):
                expected = [m for e in log if e.key == account if (m := order_message(e))]
                expected = json.loads(json.dumps(expected))
                seen = [json.loads(ws.recv(timeout=20)) for _ in expected]
                assert seen == expected
                assert len(expected) > ROUNDS and any(m["type"] == "filled" for m in expected)

        ids = {g.instance: f"gateway-{g.instance}-" for g in gateways}
        decoded = 0
        for gateway, (account, _), base in zip(gateways, followed, baseline, strict=True):
            counts = wait_until(
                lambda g=gateway, b=base: (c := heard(g.metrics) - b).total() == len(log) and c,
                30,
                f"gateway {gateway.instance} to hear every decision",
            )
            place = {(e.partition, e.offset): e for e in log}
            # decoded whatever happens: the directory's, the follower's
            needed = {p for p, e in place.items() if e.name in Directory.TYPES or e.key == account}
            # at most: those and every decision of this gateway's own commands
            mine = ids[gateway.instance]
            could = needed | {
                p for p, e in place.items() if e.record["envelope"]["reply_to"].startswith(mine)
            }
            assert len(needed) <= counts["decoded"] <= len(could)
            assert counts["decoded"] < 0.7 * len(log), (counts, len(log))
            decoded += counts["decoded"]
        # together about once each (both decode the directory's and the followers'), not twice
        assert decoded < 1.3 * len(log), (decoded, len(log))
    finally:
        for gateway in gateways:
            gateway.procs.stop_all()
        procs.stop_all()
