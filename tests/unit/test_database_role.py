"""services/common/config.py: the database URL a service gets names its PostgreSQL role and that
role's password file, never a password (docs/reliability.md, "Who may connect")."""

from __future__ import annotations

from psycopg.conninfo import conninfo_to_dict

from services.common.config import ROOT, Settings


def url(monkeypatch, **env: str) -> dict[str, str]:
    for name in ("DATABASE_URL", "MARKETLOG_DB_ROLE", "MARKETLOG_DB_SECRETS"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return conninfo_to_dict(Settings().database_url)


def test_a_role_becomes_the_user_and_its_password_file(monkeypatch):
    found = url(
        monkeypatch,
        DATABASE_URL="postgresql://127.0.0.1:55432/marketlog",
        MARKETLOG_DB_ROLE="gateway",
        MARKETLOG_DB_SECRETS="/s",
    )
    assert found == {
        "host": "127.0.0.1",
        "port": "55432",
        "dbname": "marketlog",
        "user": "gateway",
        "passfile": "/s/gateway.pgpass",
    }


def test_a_role_replaces_the_user_and_password_file_a_url_carries(monkeypatch):
    given = "postgresql://migrator@127.0.0.1:5/x?passfile=/s/migrator.pgpass"
    found = url(monkeypatch, DATABASE_URL=given, MARKETLOG_DB_ROLE="projector")
    assert (found["user"], found["dbname"]) == ("projector", "x")
    assert found["passfile"] == str(ROOT / ".state" / "secrets" / "projector.pgpass")


def test_a_given_url_without_a_role_is_used_as_it_is(monkeypatch):
    given = "postgresql://someone@db.example:5432/marketlog"
    assert url(monkeypatch, DATABASE_URL=given) == conninfo_to_dict(given)


def test_nothing_given_is_the_local_stacks_migrator(monkeypatch):
    found = url(monkeypatch)
    assert (found["user"], found["port"]) == ("migrator", "55432")
    assert found["passfile"] == str(ROOT / ".state" / "secrets" / "migrator.pgpass")
    assert "password" not in found
