"""The gateway process against a real broker and database, with a toy ledger answering its
commands (the real ledger is tested on its own; here the gateway's shell is under test):
request/reply over the log, hostile input on the XML port, timeouts, many connections."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import httpx
import psycopg
import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from infra.local import with_database
from services.common.codec import Codec
from services.common.config import ROOT, Settings
from services.common.kafka import consumer_config, producer_config
from tests.support import (
    drop_database,
    free_port,
    free_ports,
    fresh_settings,
    settings_env,
    wait_until,
)

pytestmark = pytest.mark.integration
ADMIN = "test-admin-key"

# just what the gateway reads in this test (the projector owns the real schema)
DDL = """
CREATE SCHEMA projection;
SET search_path = projection;
CREATE TABLE applied_offsets (consumer_group text, topic text, partition int, next_offset bigint,
    PRIMARY KEY (consumer_group, topic, partition));
CREATE TABLE accounts (account_id text PRIMARY KEY, api_key_hash text);
CREATE TABLE symbols (symbol text PRIMARY KEY);
"""


class ToyLedger(threading.Thread):
    """Answers CreateAccount (once per id) and Deposit; refuses everything else."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(daemon=True)
        self.settings, self.codec, self.stop = settings, Codec(), threading.Event()
        self.seen: list[str] = []

    def run(self) -> None:
        topic = self.settings.topic("ledger.commands")
        consumer = Consumer(consumer_config(self.settings, None))
        parts = consumer.list_topics(topic, 10).topics[topic].partitions
        consumer.assign([TopicPartition(topic, p, 0) for p in parts])
        producer = Producer(producer_config(self.settings))
        accounts: set[str] = set()
        while not self.stop.is_set():
            for message in consumer.consume(100, 0.05):
                if message.error() is None:
                    name, record = self.codec.decode(message.value())
                    self.seen.append(name)
                    self._decide(producer, accounts, name, record)
            producer.poll(0)
        producer.flush(5)
        consumer.close()

    def _decide(self, producer, accounts, name, record) -> None:
        key = record["envelope"]["key"]
        if name.endswith("CreateAccount") and key not in accounts:
            accounts.add(key)
            out = ("AccountCreated", {"balance": record["balance"], "api_key_hash": ""})
            out[1]["api_key_hash"] = record["api_key_hash"]
        elif name.endswith("Deposit") and key in accounts:
            out = ("CashDeposited", {"amount": record["amount"], "cash_available": 0})
        elif name.endswith("Withdraw"):
            return  # never answered: the gateway must time out
        else:
            reason = "account exists" if name.endswith("CreateAccount") else "toy ledger"
            out = ("CommandRejected", {"command": name, "reason": reason, "order_id": None})
        value = self.codec.encode(
            "marketlog.account." + out[0], {"envelope": record["envelope"], **out[1]}
        )
        producer.produce(self.settings.topic("account.events"), value, key)


def spawn_gateway(env: dict[str, str], log) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "services.gateway", "serve"],
        env=env,
        cwd=ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
    )


@pytest.fixture(scope="module")
def gateway(services, tmp_path_factory):
    settings = fresh_settings(
        services.kafka, services.database_url, tmp_path_factory.mktemp("run"), partitions=4
    )
    db = f"t{uuid.uuid4().hex[:12]}"
    with psycopg.connect(services.database_url, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {db}")
    url = with_database(services.database_url, db)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(DDL)
    settings = Settings(**{**settings.__dict__, "database_url": url})
    ledger = ToyLedger(settings)
    ledger.start()
    xml_port, http_port = free_ports(2)  # distinct, as two free_port() calls may not be
    env = settings_env(
        settings,
        MARKETLOG_XML_PORT=str(xml_port),
        MARKETLOG_HTTP_PORT=str(http_port),
        MARKETLOG_DAYTRADE_PORT=str(free_port()),  # not the default 12346 of a running stack
        MARKETLOG_DUMP_DIR=str(settings.run_dir / "dumps"),
        MARKETLOG_ADMIN_KEY=ADMIN,
        MARKETLOG_DECISION_TIMEOUT="2",
        MARKETLOG_XML_MAX_BYTES="4096",
        MARKETLOG_XML_RATE="50",
        MARKETLOG_XML_BURST="50",
        MARKETLOG_HTTP_RATE="5",
        MARKETLOG_HTTP_BURST="30",
        PYTHONPATH=str(ROOT),
    )
    log = open(Path(settings.run_dir) / "gateway.log", "wb")  # noqa: SIM115
    proc = spawn_gateway(env, log)
    try:
        wait_until(
            lambda: proc.poll() is not None or (settings.run_dir / "gateway-0.ready").exists(),
            60,
            "the gateway to be ready",
        )
        assert proc.poll() is None, (Path(settings.run_dir) / "gateway.log").read_text()
        yield {"xml": xml_port, "http": f"http://127.0.0.1:{http_port}", "ledger": ledger}
    finally:
        proc.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(15)
        if proc.poll() is None:
            proc.kill()
        ledger.stop.set()
        ledger.join(10)
        log.close()
        drop_database(services.database_url, db)


def exchange(sock: socket.socket, body: bytes, framed: bool = False) -> str:
    sock.sendall(b"%d%s\n%s" % (len(body), b" framed" if framed else b"", body))
    return read_results(sock)


def read_results(sock: socket.socket) -> str:
    data = b""
    while b"</results>" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    return data.decode()


def connect(gateway) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", gateway["xml"]), timeout=15)
    return sock


def test_create_account_over_xml_answers_from_the_decision(gateway):
    account = str(uuid.uuid4().int)[:12]
    with connect(gateway) as sock:
        body = f'<create><account id="{account}" balance="100.5"/></create>'.encode()
        assert f'<created id="{account}"/>' in exchange(sock, body)
        again = exchange(sock, body, framed=True)  # same connection, framed reply
        assert again.split("\n", 1)[0].isdigit()
        assert f'<error id="{account}">account exists</error>' in again


def test_hostile_input_gets_errors_and_the_connection_goes_on(gateway):
    before = len(gateway["ledger"].seen)
    with connect(gateway) as sock:
        for body in [
            b"<create>",
            b'<!DOCTYPE a [<!ENTITY e SYSTEM "file:///etc/passwd">]><create>&e;</create>',
            b'<transactions id="1"><order sym="A" amount="0" limit="1"/></transactions>',
            b'<transactions id="999999999"><query id="1"/></transactions>',
        ]:
            assert "<error" in exchange(sock, body)
        assert "<results>" in exchange(sock, b"<create/>")
    assert len(gateway["ledger"].seen) == before  # nothing was appended for any of them


@pytest.mark.parametrize(
    "stream, message",
    [
        (b"<create/>\n", "missing length line"),
        (b"abc\n<create/>", "bad length line"),
        (b"999999\n", "over the limit"),
    ],
)
def test_broken_framing_is_answered_then_the_connection_closes(gateway, stream, message):
    with connect(gateway) as sock:
        sock.sendall(stream)
        reply = read_results(sock)
        assert message in reply
        assert sock.recv(10) == b""


def test_truncated_request_is_answered(gateway):
    with connect(gateway) as sock:
        sock.sendall(b"100\n<create>")
        sock.shutdown(socket.SHUT_WR)
        assert "truncated request" in read_results(sock)


def test_a_flood_from_one_connection_is_limited_without_hurting_another(gateway):
    body = b"<create/>"
    with connect(gateway) as flood, connect(gateway) as calm:
        flood.sendall(b"".join(b"%d\n%s" % (len(body), body) for _ in range(120)))
        replies = ""
        while replies.count("</results>") < 120:
            replies += flood.recv(65536).decode()
        assert "rate limit exceeded" in replies
        assert "rate limit" not in exchange(calm, body)


def test_many_concurrent_connections(gateway):
    count = 1000
    socks = [connect(gateway) for _ in range(count)]
    try:
        body = b"<create/>"
        for sock in socks:
            sock.sendall(b"%d\n%s" % (len(body), body))
        answered = sum("<results>" in read_results(sock) for sock in socks)
        assert answered == count
    finally:
        for sock in socks:
            sock.close()


def test_http_create_account_returns_a_key_once_and_logs_its_hash(gateway):
    with httpx.Client(base_url=gateway["http"], timeout=10) as http:
        assert http.post("/accounts", json={"balance": "1"}).status_code == 401
        bad = http.post("/accounts", json={}, headers={"Authorization": "Bearer nope"})
        assert bad.status_code == 401
        made = http.post("/accounts", json={"balance": "12.5"}, headers=admin_headers())
        assert made.status_code == 201, made.text
        body = made.json()
        assert body["balance"] == "12.5" and len(body["api_key"]) >= 43
        key = body["api_key"]
        headers = {"Authorization": f"Bearer {key}"}
        # the key works at once (the tail saw AccountCreated with its hash)
        deposit = http.post("/account/deposit", json={"amount": "1.5"}, headers=headers)
        assert deposit.status_code == 200, deposit.text
        assert http.post("/accounts", json={}, headers=headers).status_code == 403
        assert hashlib.sha256(key.encode()).hexdigest()  # only the hash was appended


def test_a_write_with_no_decision_times_out_clearly(gateway):
    with httpx.Client(base_url=gateway["http"], timeout=10) as http:
        made = http.post("/accounts", json={}, headers=admin_headers()).json()
        headers = {"Authorization": f"Bearer {made['api_key']}"}
        started = time.monotonic()
        answer = http.post("/account/withdraw", json={"amount": "1"}, headers=headers)
        assert answer.status_code == 504
        assert "no decision" in answer.json()["error"] and answer.json()["command_id"]
        assert time.monotonic() - started < 5


def test_http_hostile_bodies(gateway):
    with httpx.Client(base_url=gateway["http"], timeout=10) as http:
        too_big = http.post(
            "/accounts", content=b"{" + b" " * 100_000 + b"}", headers=admin_headers()
        )
        assert too_big.status_code == 413
        for body in [{"balance": "-1"}, {"balance": "1e5"}, {"balance": "0.0000001"}, {"x": 1}]:
            answer = http.post("/accounts", json=body, headers=admin_headers())
            assert answer.status_code == 422 and answer.json()["error"]


def admin_headers() -> dict[str, str]:
    return {"Authorization": f"Bearer {ADMIN}"}


def test_ready_and_docs(gateway):
    with httpx.Client(base_url=gateway["http"], timeout=10) as http:
        assert http.get("/docs").status_code == 200
        spec = http.get("/openapi.json").json()
        assert "/orders" in spec["paths"]
    wait_until(lambda: True, 1, "nothing")


def test_a_flood_from_one_key_is_limited_without_hurting_another(gateway):
    with httpx.Client(base_url=gateway["http"], timeout=10) as http:
        keys = [
            http.post("/accounts", json={}, headers=admin_headers()).json()["api_key"]
            for _ in range(2)
        ]

    async def at_once() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=gateway["http"], timeout=10) as client:
            return await asyncio.gather(
                *(
                    client.post("/account/deposit", json={"amount": "1"}, headers=bearer(keys[0]))
                    for _ in range(40)
                )
            )

    with httpx.Client(base_url=gateway["http"], timeout=10) as http:
        flood = asyncio.run(at_once())
        codes = [answer.status_code for answer in flood]
        assert codes.count(429) >= 5 and codes.count(200) >= 25
        assert all("rate limit" in a.json()["error"] for a in flood if a.status_code == 429)
        calm = http.post("/account/deposit", json={"amount": "1"}, headers=bearer(keys[1]))
        assert calm.status_code == 200


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def test_a_gateway_still_waiting_to_be_ready_stops_on_sigterm(services, database_url, tmp_path):
    """Its database has no projection yet (no projector ran): it waits, and a stop is honoured
    there too (one waiting for a broker that had gone ignored SIGTERM for 25 minutes)."""
    settings = fresh_settings(services.kafka, database_url, tmp_path, partitions=1)
    xml_port, http_port, daytrade_port = free_ports(3)
    env = settings_env(
        settings,
        MARKETLOG_XML_PORT=str(xml_port),
        MARKETLOG_HTTP_PORT=str(http_port),
        MARKETLOG_DAYTRADE_PORT=str(daytrade_port),
        MARKETLOG_DUMP_DIR=str(tmp_path / "dumps"),
        MARKETLOG_ADMIN_KEY=ADMIN,
        PYTHONPATH=str(ROOT),
    )
    log_path = tmp_path / "gateway.log"
    with open(log_path, "wb") as log:
        proc = spawn_gateway(env, log)
        try:
            wait_until(
                lambda: (
                    proc.poll() is not None or "waiting for the projection" in log_path.read_text()
                ),
                60,
                "the gateway to wait for the projection",
            )
            assert proc.poll() is None, log_path.read_text()
            proc.terminate()
            assert proc.wait(30) == 0, log_path.read_text()
            assert not (tmp_path / "gateway-0.ready").exists()
        finally:
            if proc.poll() is None:
                proc.kill()
