"""The running system under its PostgreSQL roles (docs/reliability.md, "Who may connect"): the
projector and the gateway hold sessions as `projector` and `gateway`, answers that need both (a
write projected, then read back) come, and no role's password is in any service's log or in any
record the run appended."""

from __future__ import annotations

import psycopg
import pytest
from confluent_kafka.admin import AdminClient

from tests.support import read_all

from .xml_client import XmlClient, fresh_account, fresh_symbol

pytestmark = pytest.mark.e2e


def test_the_services_connect_as_their_roles_and_no_password_leaks(system, services):
    assert services.secrets is not None, "the session's PostgreSQL is not the project's own"
    seller, buyer, sym = fresh_account(), fresh_account(), fresh_symbol("R")
    with XmlClient(system.xml_port, timeout=60) as client:
        created = client.send(
            f'<create><account id="{seller}" balance="0"/><account id="{buyer}" balance="500"/>'
            f'<symbol sym="{sym}"><account id="{seller}">10</account></symbol></create>'.encode()
        )
        assert [c.tag for c in created] == ["created"] * 3
        tags = []
        for account, amount in ((seller, -10), (buyer, 4)):
            (opened,) = client.send(
                f'<transactions id="{account}"><order sym="{sym}" amount="{amount}" limit="5"/>'
                "</transactions>".encode()
            )
            tags.append(opened.tag)
        # a query is read from the projection (the gateway's role) that the projector's wrote
        (status,) = client.send(
            f'<transactions id="{buyer}"><query id="{opened.get("id")}"/></transactions>'.encode()
        )
    assert tags == ["opened", "opened"]
    assert [e.tag for e in status] == ["executed"]

    database = psycopg.conninfo.conninfo_to_dict(system.settings.database_url)["dbname"]
    with psycopg.connect(services.database_url) as conn:
        # another role's sessions show their database and user, not more (autovacuum: no user)
        users = {
            u
            for (u,) in conn.execute(
                "SELECT usename FROM pg_stat_activity WHERE datname = %s"
                " AND usename IS NOT NULL AND pid <> pg_backend_pid()",
                (database,),
            )
        }
    assert users == {"projector", "gateway"}

    passwords = [
        path.read_text().strip().split(":", 4)[4].encode()
        for path in sorted(services.secrets.glob("*.pgpass"))
    ]
    assert len(passwords) == 3
    for log in system.logs.glob("*.log"):
        text = log.read_bytes()
        assert not [p for p in passwords if p in text], log.name
    topics = AdminClient({"bootstrap.servers": system.settings.kafka}).list_topics(timeout=10)
    mine = [t for t in topics.topics if t.startswith(system.settings.topic_prefix)]
    assert len(mine) >= 4
    records = 0
    for topic in mine:
        for record in read_all(system.settings, topic, committed=False, timeout=5):
            raw = b"".join(
                [record.key() or b"", record.value() or b""]
                + [v or b"" for _, v in record.headers() or []]
            )
            assert not [p for p in passwords if p in raw], topic
            records += 1
    assert records > 0
