"""Checks that run before an experiment starts: does each broker answer? Light: imports no Celery."""

from __future__ import annotations

import socket
from urllib.parse import urlsplit

from shared import settings

DEFAULT_PORTS = {"redis": 6379, "rabbitmq": 5672}


def broker_url(broker: str, s: settings.Settings) -> str:
    """The URL Celery uses for broker kind `broker` (the same rule as `celery_app.broker_url`)."""
    if broker == settings.broker_kind(s.celery_broker_url):
        return s.celery_broker_url
    return s.broker_url_for(broker)


def broker_port(broker: str, s: settings.Settings) -> int | None:
    """The TCP port of a Redis or RabbitMQ broker (None for the PostgreSQL broker)."""
    if broker == "postgres":
        return None
    return urlsplit(broker_url(broker, s)).port or DEFAULT_PORTS[broker]


def check_broker(broker: str, s: settings.Settings, timeout: float = 3.0) -> str | None:
    """None when Celery's broker `broker` answers, else one line saying what is wrong and what to do."""
    url = broker_url(broker, s)
    if broker == "postgres":
        from shared import db

        try:
            with db.connect(s.queue_database_url, role="check", connect_timeout=int(timeout)):
                return None
        except Exception as exc:  # noqa: BLE001 - any failure to connect is the answer
            return db.describe_connect_error(s.queue_database_url, exc)
    parts = urlsplit(url)
    try:
        with socket.create_connection(
            (parts.hostname or "127.0.0.1", broker_port(broker, s) or 0), timeout=timeout
        ):
            return None
    except OSError as exc:
        var = "REDIS_URL" if broker == "redis" else "RABBITMQ_URL"
        return (
            f"the {broker} broker does not answer at {settings.redact(url)} ({exc.strerror or exc}); "
            f"start it or set {var}"
        )
