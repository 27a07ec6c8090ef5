"""Cluster mode's pure parts: the ACLs per principal, the credentials hook, the spec's modes."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import hmac
import json
import os

import pytest
from confluent_kafka.admin import AclOperation, ResourcePatternType, ResourceType

from infra.cluster import ADMIN, GRANTS, acl_bindings, principal, salted_scram
from services.common.config import Settings
from services.common.kafka import CredentialsError, consumer_config, producer_config
from services.common.topics import load_spec

ROLES = {"ledger.commands", "match.commands", "market.events", "account.events"}


def grants_of(service: str, prefix: str = "") -> set[tuple]:
    return {
        (b.restype, b.name, b.resource_pattern_type, b.operation, b.principal)
        for b in acl_bindings(service, GRANTS[service], prefix)
    }


def writes(service: str) -> set[str]:
    return {
        name
        for kind, name, _, op, _ in grants_of(service)
        if kind == ResourceType.TOPIC and op == AclOperation.WRITE
    }


def test_only_the_gateway_and_the_matcher_write_commands_and_only_processors_decide():
    writers = {s for s in GRANTS if "ledger.commands" in writes(s)}
    assert writers == {"gateway", "matcher"}  # the matcher's settlements
    assert {s for s in GRANTS if "account.events" in writes(s)} == {"ledger", "engine"}
    assert {s for s in GRANTS if "market.events" in writes(s)} == {"matcher", "engine"}
    assert {s for s in GRANTS if "match.commands" in writes(s)} == {"ledger"}
    assert writes("gateway") == {"ledger.commands"}
    assert writes("projector") == set()


def test_bindings_name_the_principal_and_prefixed_resources():
    found = grants_of("ledger", prefix="t1.")
    assert {p for *_, p in found} == {f"User:{principal('ledger')}"}
    assert all(name.startswith("t1.") for _, name, *_ in found)
    txn = [b for b in found if b[0] == ResourceType.TRANSACTIONAL_ID]
    assert txn == [
        (ResourceType.TRANSACTIONAL_ID, "t1.ledger-", ResourcePatternType.PREFIXED,
         AclOperation.WRITE, "User:marketlog-ledger")
    ]  # fmt: skip
    assert principal("ledger") != ADMIN


def test_the_salted_scram_credential_is_rfc5802s():
    salt = b"0123456789abcdef"
    text = salted_scram("pencil", salt, 4096)
    salted = base64.b64decode(text.split('saltedpassword="')[1].split('"')[0])
    # Hi(): PBKDF2 written out as RFC 5802 defines it (the naive twin of hashlib's)
    u = hmac.new(b"pencil", salt + b"\0\0\0\1", "sha512").digest()
    result = bytearray(u)
    for _ in range(4095):
        u = hmac.new(b"pencil", u, "sha512").digest()
        result = bytearray(a ^ b for a, b in zip(result, u, strict=True))
    assert salted == bytes(result) == hashlib.pbkdf2_hmac("sha512", b"pencil", salt, 4096)
    assert "pencil" not in text and f"name={ADMIN}" in text


def test_without_a_credentials_file_clients_speak_plaintext():
    plain = Settings(kafka="127.0.0.1:1", kafka_security="")
    for conf in (producer_config(plain), consumer_config(plain, "g")):
        assert not any(k.startswith(("sasl.", "security.")) for k in conf)
    assert producer_config(plain)["acks"] == "all" and producer_config(plain)["enable.idempotence"]


def test_a_credentials_file_adds_sasl_to_every_client(tmp_path):
    path = tmp_path / "gateway.json"
    body = {"security.protocol": "SASL_PLAINTEXT", "sasl.mechanism": "SCRAM-SHA-512",
            "sasl.username": "u", "sasl.password": "p"}  # fmt: skip
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    os.write(fd, json.dumps(body).encode())
    os.close(fd)
    settings = Settings(kafka="127.0.0.1:1", kafka_security=str(path))
    for conf in (producer_config(settings, "ledger-0"), consumer_config(settings, None)):
        assert {k: conf[k] for k in body} == body
    os.chmod(path, 0o644)  # readable by others: refused, not used
    with pytest.raises(CredentialsError, match="must be 600"):
        producer_config(settings)
    os.chmod(path, 0o600)
    path.write_text(json.dumps({**body, "acks": "0"}))  # only how to authenticate
    with pytest.raises(CredentialsError):
        consumer_config(settings, None)
    missing = dataclasses.replace(settings, kafka_security=str(tmp_path / "none.json"))
    with pytest.raises(CredentialsError, match=r"none\.json"):
        producer_config(missing)


def test_the_spec_replicates_per_mode():
    single = load_spec(Settings(kafka_mode="single", partitions=4))
    cluster = load_spec(Settings(kafka_mode="cluster", partitions=4))
    assert {s.replication for s in single} == {1}
    assert {s.replication for s in cluster} == {3}
    assert {s.config["min.insync.replicas"] for s in cluster} == {"2"}
    assert {s.name for s in cluster} >= ROLES
    assert [(s.name, s.partitions) for s in single] == [(s.name, s.partitions) for s in cluster]
    with pytest.raises(ValueError, match="MARKETLOG_KAFKA_MODE"):
        load_spec(Settings(kafka_mode="triple"))
