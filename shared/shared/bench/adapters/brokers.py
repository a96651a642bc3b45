"""The brokers Celery runs on, as the servers themselves tell: their URLs and ports, whether they answer,
what their durability is (Redis' persistence, RabbitMQ's queue durability, message persistence and
publisher confirms), and how a harness queue is removed from them (`shared.bench.adapters.celery`)."""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from shared import celery_app, settings

DEFAULT_PORTS = {"redis": 6379, "rabbitmq": 5672}


def broker_url(broker: str, s: settings.Settings) -> str:
    """The URL Celery uses for broker kind `broker`."""
    return celery_app.broker_url(broker, s)


def broker_port(broker: str, s: settings.Settings) -> int | None:
    """The TCP port of a Redis or RabbitMQ broker (None for the PostgreSQL broker)."""
    if broker == "postgres":
        return None
    return urlsplit(broker_url(broker, s)).port or DEFAULT_PORTS[broker]


def check_broker(broker: str, s: settings.Settings, timeout: float = 3.0) -> str | None:
    """None when broker `broker` answers, else one line saying what is wrong and what to do. The
    PostgreSQL broker is the harness's own database, which the harness checks as it starts."""
    if broker == "postgres":
        return None
    url = broker_url(broker, s)
    try:
        with socket.create_connection(
            (urlsplit(url).hostname or "127.0.0.1", broker_port(broker, s) or 0), timeout=timeout
        ):
            return None
    except OSError as exc:
        var = settings.ENV_REDIS_URL if broker == "redis" else settings.ENV_RABBITMQ_URL
        return (
            f"the {broker} broker does not answer at {settings.redact(url)} ({exc.strerror or exc}); "
            f"start it or set {var}"
        )


def delete_queue(app: Any, broker: str, queue: str) -> None:
    """Remove `queue` from `broker`: RabbitMQ keeps durable queues, Redis drops empty lists by itself, and
    kombu's SQL transport never deletes a delivered message (its purge deletes the queue's rows)."""
    if broker == "redis":
        return
    from kombu import Queue

    with contextlib.suppress(Exception), app.connection_for_write() as conn:
        q = Queue(queue, channel=conn.default_channel)
        q.purge() if broker == "postgres" else q.delete()


def redis_durability(url: str) -> dict[str, Any]:
    """Redis' version and persistence as the server reports them (`CONFIG GET`, `INFO server`)."""
    import redis

    try:
        client = redis.Redis.from_url(url, socket_timeout=5)
        try:
            conf = {
                k: v for k, v in client.config_get("*").items() if k in ("appendonly", "appendfsync", "save")
            }
            version = client.info("server").get("redis_version")
        finally:
            client.close()
    except redis.RedisError as exc:
        return {"server": "redis", "error": str(exc)}
    aof = conf.get("appendonly") == "yes"
    promise = (
        f"an acknowledged publish is in Redis' append-only file (appendfsync {conf.get('appendfsync')})"
        if aof
        else "no append-only file"
        + (f", snapshots `save {conf.get('save')}`" if conf.get("save") else ", no snapshots")
        + ": a crash of the Redis server loses the messages it holds"
    )
    return {"server": "redis", "version": version, **conf, "promise": promise}


def rabbitmq_durability(url: str, conf: Mapping[str, Any]) -> dict[str, Any]:
    """RabbitMQ's version (from the server's connection properties) and what Celery's configuration asks of
    it: durable queues, persistent messages, publisher confirms."""
    from kombu import Connection

    app = celery_app.make_app("rabbitmq")
    try:
        # The queue Celery declares for a queue name it is given (as the harness's are), and its messages.
        durable = bool(app.amqp.queues.new_missing("bench-durability").durable)
        persistent = app.conf.task_default_delivery_mode in ("persistent", 2)
    finally:
        app.close()
    confirms = bool((conf.get("broker_transport_options") or {}).get("confirm_publish"))
    try:
        with Connection(url, connect_timeout=5) as conn:
            conn.ensure_connection(max_retries=1)
            props = getattr(conn.connection, "server_properties", {}) or {}
            version = props.get("version")
    except Exception as exc:  # noqa: BLE001 - any failure to connect is reported, not raised
        return {"server": "rabbitmq", "error": str(exc)}
    promise = (
        f"{'durable' if durable else 'non-durable'} queues, {'persistent' if persistent else 'transient'} "
        "messages, "
        + (
            "publisher confirms: a publish returns once RabbitMQ has taken the message"
            if confirms
            else "no publisher confirms: a publish returns before RabbitMQ has taken the message"
        )
    )
    return {
        "server": "rabbitmq",
        "version": version.decode() if isinstance(version, bytes) else version,
        "durable_queues": durable,
        "persistent_messages": persistent,
        "publisher_confirms": confirms,
        "promise": promise,
    }
