from __future__ import annotations

import pytest

from shared import settings
from shared.settings import ConfigError


def test_postgres_and_postgresql_forms_are_accepted_and_normalised():
    a = settings.normalize_postgres_url("postgres://u:p@h:5433/db", "DATABASE_URL")
    b = settings.normalize_postgres_url("postgresql://u:p@h:5433/db", "DATABASE_URL")
    assert a == b == "postgresql://u:p@h:5433/db"
    assert settings.sqlalchemy_url(a) == "postgresql+psycopg://u:p@h:5433/db"
    assert settings.kombu_sql_url(a) == "sqla+postgresql+psycopg://u:p@h:5433/db"


@pytest.mark.parametrize(
    "value, fragment",
    [
        ("mysql://u@h/db", "must start with postgres://"),
        ("postgresql://u@h:notaport/db", "not a valid URL"),
        ("postgresql://u@h:5432/", "names no database"),
        ("not a url", "must start with postgres://"),
    ],
)
def test_malformed_database_url_names_the_variable(value, fragment):
    with pytest.raises(ConfigError) as exc:
        settings.load({"DATABASE_URL": value})
    assert "DATABASE_URL" in str(exc.value)
    assert fragment in str(exc.value)


def test_password_is_redacted_in_errors():
    with pytest.raises(ConfigError) as exc:
        settings.load({"DATABASE_URL": "mysql://user:s3cret@h/db"})
    assert "s3cret" not in str(exc.value)


def test_queue_url_defaults_to_database_url():
    s = settings.load({"DATABASE_URL": "postgres://h/app"})
    assert s.queue_database_url == s.database_url == "postgresql://h/app"
    s2 = settings.load({"DATABASE_URL": "postgres://h/app", "QUEUE_DATABASE_URL": "postgresql://h2/q"})
    assert s2.queue_database_url == "postgresql://h2/q"


def test_broker_defaults_to_the_sql_transport_on_the_queue_database():
    s = settings.load({"DATABASE_URL": "postgres://h/app"})
    assert s.celery_broker_url == "sqla+postgresql+psycopg://h/app"
    assert s.broker == "postgres"


@pytest.mark.parametrize(
    "url, kind",
    [
        ("redis://h:6379/0", "redis"),
        ("amqp://g:g@h//", "rabbitmq"),
        ("postgresql://h/db", "postgres"),
        ("sqla+postgresql://h/db", "postgres"),
    ],
)
def test_known_broker_schemes(url, kind):
    s = settings.load({"DATABASE_URL": "postgres://h/app", "CELERY_BROKER_URL": url})
    assert s.broker == kind


def test_unknown_broker_scheme_is_a_clear_error():
    with pytest.raises(ConfigError) as exc:
        settings.load({"DATABASE_URL": "postgres://h/app", "CELERY_BROKER_URL": "kafka://h:9092"})
    assert "CELERY_BROKER_URL" in str(exc.value) and "'kafka'" in str(exc.value)


def test_bad_port_names_the_variable():
    with pytest.raises(ConfigError, match="PORT must be an integer"):
        settings.load({"DATABASE_URL": "postgres://h/app", "PORT": "eighty"})
    with pytest.raises(ConfigError, match="PORT must be between"):
        settings.load({"DATABASE_URL": "postgres://h/app", "PORT": "70000"})


def test_the_sender_processes_are_chosen_from_the_rate_unless_set():
    assert settings.sender_processes({}) is None
    assert settings.sender_processes({"BENCH_SENDER_PROCESSES": "0"}) is None
    assert settings.sender_processes({"BENCH_SENDER_PROCESSES": "4"}) == 4
    with pytest.raises(ConfigError, match="BENCH_SENDER_PROCESSES must be between"):
        settings.sender_processes({"BENCH_SENDER_PROCESSES": "1000"})
    with pytest.raises(ConfigError, match="BENCH_SENDER_PROCESSES must be an integer"):
        settings.sender_processes({"BENCH_SENDER_PROCESSES": "many"})


def test_without_database_url_and_nothing_listening_the_error_says_make_db_up(monkeypatch, tmp_path):
    monkeypatch.setattr(settings, "EMBEDDED_URL_FILE", tmp_path / "missing.url")
    from shared.embedded import free_port

    with pytest.raises(ConfigError, match="make db-up"):
        settings.load({"LOCAL_PG_ADDR": f"127.0.0.1:{free_port()}"})


def test_without_database_url_the_embedded_cluster_comes_first(monkeypatch, tmp_path):
    import socket

    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        url_file = tmp_path / "embedded.url"
        url_file.write_text(f"postgresql://postgres@127.0.0.1:{port}/postgres\n")
        monkeypatch.setattr(settings, "EMBEDDED_URL_FILE", url_file)
        s = settings.load({"LOCAL_PG_ADDR": "127.0.0.1:1"})
        assert s.database_url == f"postgresql://postgres@127.0.0.1:{port}/postgres"
