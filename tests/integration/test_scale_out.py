"""Scale-out (issue 19): two instances each of the ledger, the matcher and the projector share the
partitions of their input (one consumer group per service, one transactional id per instance);
when one instance of each is killed -9, the survivors take its partitions over (after the 10 s
session timeout of a static member) and every command is still decided exactly once."""

from __future__ import annotations

import random
import socket
from collections import Counter

import pytest

from services.common.codec import Codec
from services.common.config import Settings
from services.projector.schema import connect, contents
from tests.integration import backlog
from tests.integration.test_pipeline import CommandLog, feed, query, settled
from tests.support import ServiceProcs, free_port, fresh_settings, read_all, run_cli, wait_until

pytestmark = pytest.mark.integration

PARTITIONS = 4
SERVICES = ("ledger", "matcher", "projector")
INPUTS = {  # what each service's group reads
    "ledger": ("ledger.commands",),
    "matcher": ("match.commands",),
    "projector": ("account.events", "market.events", "analytics.candles"),
}
DECIDED = {"OrderAccepted", "CommandRejected", "CashDeposited"}


def owners(settings: Settings, service: str) -> dict[str, set]:
    """Partitions of `service`'s input owned by each of its two instances, as the broker sees."""
    group = settings.topic_prefix + service
    return {i: backlog.assigned(settings.kafka, group, f"{group}-{i}") for i in ("0", "1")}


def decisions(settings: Settings, sent: dict[str, str]) -> Counter:
    codec, found = Codec(), Counter()
    for record in read_all(settings, settings.topic("account.events")):
        name, event = codec.decode(record.value())
        command = event["envelope"]["command_id"]
        if name.rsplit(".", 1)[1] in DECIDED and command in sent:
            found[command] += 1
    return found


def test_two_instances_share_the_partitions_and_survive_the_loss_of_one(
    services, database_url, tmp_path
):
    settings = fresh_settings(services.kafka, database_url, tmp_path / "run", partitions=PARTITIONS)
    procs = ServiceProcs(
        settings,
        tmp_path,
        MARKETLOG_LEDGER_SNAPSHOT_RECORDS="200",
        MARKETLOG_MATCHER_SNAPSHOT_RECORDS="200",
    )
    try:
        procs.start("projector@0")  # applies the migrations before anyone else reads the tables
        procs.start("projector@1", *(f"{s}@{i}" for s in ("ledger", "matcher") for i in "01"))
        for service in SERVICES:  # each instance owns a share, together all of them
            wait_until(lambda s=service: all(owners(settings, s).values()), 60, f"{service} shared")
            shares = owners(settings, service)
            assert not shares["0"] & shares["1"]
            assert len(shares["0"] | shares["1"]) == PARTITIONS * len(INPUTS[service])

        log = CommandLog(settings)
        symbols, accounts = [f"S{i}" for i in range(6)], [f"a{i}" for i in range(24)]
        for symbol in symbols:
            log.list_symbol(symbol)
        for account in accounts:
            log.open_account(account, 1_000_000, dict.fromkeys(symbols, 10_000))
        rng = random.Random(19)
        feed(log, rng, accounts, symbols, 600)
        for victim in ("ledger@1", "matcher@0", "projector@1"):
            procs.kill(victim)
        feed(log, rng, accounts, symbols, 600)  # for the survivors, once they take over

        for service, survivor in (("ledger", "0"), ("matcher", "1"), ("projector", "0")):
            wait_until(
                lambda s=service, i=survivor: (
                    len(owners(settings, s)[i]) == PARTITIONS * len(INPUTS[s])
                ),
                60,
                f"{service}@{survivor} to own every partition",
            )
        commands = {
            cid
            for cid, name in log.sent.items()
            if name in {"PlaceOrder", "CancelOrder", "Deposit"}
        }
        found = wait_until(
            lambda: (d := decisions(settings, log.sent)) and commands <= set(d) and d,
            120,
            "a decision for every command",
        )
        assert not {c: n for c, n in found.items() if n != 1}, "a command decided twice"
        wait_until(lambda: settled(settings), 120, "the pipeline to settle")
        trades = query(settings, "SELECT count(*), count(DISTINCT (symbol, seq)) FROM trades")[0]
        assert trades[0] > 50 and trades[0] == trades[1]
        for cli in (
            ("services.projector", "audit"),
            ("services.ledger", "verify"),
            ("services.matcher", "verify"),
        ):
            done = run_cli(settings, *cli)
            assert done.returncode == 0, done.stdout + done.stderr
    finally:
        procs.stop_all()
    incremental = contents_of(settings)
    assert run_cli(settings, "services.projector", "rebuild").returncode == 0
    assert contents_of(settings) == incremental


def contents_of(settings: Settings) -> dict[str, list[tuple]]:
    with connect(settings.database_url) as conn:
        return contents(conn)


def xml_request(port: int, body: bytes, conn: socket.socket | None = None) -> bytes:
    """One request on `conn` (a new connection without one); the reply up to </results>."""
    sock = conn or socket.create_connection(("127.0.0.1", port), timeout=30)
    sock.sendall(b"%d\n%s" % (len(body), body))
    reply = b""
    while b"</results>" not in reply:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("the gateway hung up")
        reply += chunk
    if conn is None:
        sock.close()
    return reply


def test_two_gateways_share_one_address_and_one_can_go(services, database_url, tmp_path):
    """MARKETLOG_GATEWAY_REUSE_PORT=1: both gateways listen on the same ports, the kernel spreads
    the connections, each answers its own from the decisions addressed to it; when one is killed,
    its clients reconnect to the same address and are served by the other."""
    settings = fresh_settings(services.kafka, database_url, tmp_path / "run", partitions=2)
    port = free_port()
    procs = ServiceProcs(
        settings,
        tmp_path,
        MARKETLOG_GATEWAY_REUSE_PORT="1",
        MARKETLOG_XML_PORT=str(port),
        MARKETLOG_HTTP_PORT=str(free_port()),
        MARKETLOG_PRIVATE_PORT=str(free_port()),
        MARKETLOG_PUBLIC_PORT=str(free_port()),
        MARKETLOG_DAYTRADE_PORT=str(free_port()),
    )
    try:
        procs.start("projector", "ledger", "matcher", "gateway@0", "gateway@1")
        accounts = [str(500 + i) for i in range(16)]
        body = "<create>" + "".join(f'<account id="{a}" balance="100000"/>' for a in accounts)
        body += '<symbol sym="G">' + "".join(f'<account id="{a}">1000</account>' for a in accounts)
        assert b"<error" not in xml_request(port, (body + "</symbol></create>").encode())

        def orders(round_: int) -> int:
            opened = 0
            conns = [socket.create_connection(("127.0.0.1", port), timeout=30) for _ in accounts]
            try:
                for n, (account, conn) in enumerate(zip(accounts, conns, strict=True)):
                    side = 1 if (n + round_) % 2 else -1
                    order = f'<order sym="G" amount="{side}" limit="{10 + n % 3}"/>'
                    reply = xml_request(
                        port, f'<transactions id="{account}">{order}</transactions>'.encode(), conn
                    )
                    opened += b"<opened" in reply
            finally:
                for conn in conns:
                    conn.close()
            return opened

        assert orders(0) == len(accounts)
        by_gateway = Counter(
            Codec().decode(r.value())[1]["envelope"]["reply_to"].split("-")[1]
            for r in read_all(settings, settings.topic("ledger.commands"))
            if Codec().decode(r.value())[0] == "marketlog.ledger.PlaceOrder"
        )
        assert set(by_gateway) == {"0", "1"}, f"both gateways took connections: {by_gateway}"
        procs.kill("gateway@1")
        assert orders(1) == len(accounts)  # every connection now lands on gateway@0
    finally:
        procs.stop_all()
