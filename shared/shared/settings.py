"""Settings, read from the environment in one place.

Every variable the project reads is named here once (docs/architecture.md, "Settings and the database"). A malformed value raises
`ConfigError`, whose message names the variable, says what is wrong and what to do; the command-line
entry points print that one line and exit non-zero instead of showing a traceback.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

PROJECT_ROOT = Path(__file__).resolve().parents[2]
DATA_DIR = Path(os.environ.get("BENCH_DATA_DIR") or PROJECT_ROOT / ".data")
EMBEDDED_URL_FILE = DATA_DIR / "embedded-pg.url"
# Benchmark reports: reports/ in a checkout; images point it at their writable data folder.
REPORTS_DIR = Path(os.environ.get("BENCH_REPORTS_DIR") or PROJECT_ROOT / "reports")

ENV_DATABASE_URL = "DATABASE_URL"
ENV_QUEUE_DATABASE_URL = "QUEUE_DATABASE_URL"
ENV_CELERY_BROKER_URL = "CELERY_BROKER_URL"
ENV_REDIS_URL = "REDIS_URL"
ENV_RABBITMQ_URL = "RABBITMQ_URL"
ENV_ADMIN_USER = "ADMIN_USER"
ENV_ADMIN_PASSWORD = "ADMIN_PASSWORD"
ENV_SECRET_KEY = "SECRET_KEY"
ENV_PORT = "PORT"
ENV_LOCAL_PG_ADDR = "LOCAL_PG_ADDR"
# This machine's name in worker heartbeats and on the executor's experiment row (default: the hostname). Set
# it to run several "hosts" on one machine: a local fleet, or the tests of two web machines.
ENV_HOST = "BENCH_HOST"
# Set by Fly.io on every machine (docs/deploy.md): where they are set, the workers are deployed apart.
ENV_FLY_APP_NAME = "FLY_APP_NAME"
ENV_FLY_MACHINE_ID = "FLY_MACHINE_ID"
ENV_WORKLOADS = "BENCH_WORKLOADS"
"""Modules (comma-separated) that register the user's own workloads (docs/benchmark.md, "Your own workload")."""
ENV_SENDER_PROCESSES = "BENCH_SENDER_PROCESSES"
"""How many processes send an open-loop run's jobs (docs/benchmark.md, "The open-loop sender"); unset or 0:
one per 250 jobs/s of the run's rate."""
MAX_SENDER_PROCESSES = 64

DEFAULT_LOCAL_PG_ADDR = "127.0.0.1:5432"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
DEFAULT_RABBITMQ_URL = "amqp://guest:guest@127.0.0.1:5672//"

POSTGRES_SCHEMES = ("postgres", "postgresql", "postgresql+psycopg")
BROKER_SCHEMES = {
    "sqla+postgresql": "postgres",
    "sqla+postgresql+psycopg": "postgres",
    "sqla+postgres": "postgres",
    "redis": "redis",
    "rediss": "redis",
    "amqp": "rabbitmq",
    "amqps": "rabbitmq",
    "pyamqp": "rabbitmq",
}


class ConfigError(Exception):
    """A setting is missing or malformed; the message says which and what to do."""


def normalize_postgres_url(value: str, variable: str) -> str:
    """Return `value` as a plain `postgresql://` URL, or raise `ConfigError` naming `variable`.

    Accepts the forms users have: `postgres://` (as Fly sets it), `postgresql://` and
    `postgresql+psycopg://`. The driver-specific forms are derived from the result (see `sqlalchemy_url`).
    """
    value = value.strip()
    try:
        parts = urlsplit(value)
        port = parts.port  # raises ValueError on a non-numeric port
    except ValueError as exc:
        raise ConfigError(f"{variable} is not a valid URL ({exc}): {redact(value)!r}") from None
    if parts.scheme not in POSTGRES_SCHEMES:
        raise ConfigError(
            f"{variable} must start with postgres:// or postgresql://, got {redact(value)!r}; "
            "example: postgresql://user:password@127.0.0.1:5432/dbname"
        )
    query = dict(parse_qsl(parts.query))
    if not parts.hostname and "host" not in query:
        raise ConfigError(f"{variable} names no host: {redact(value)!r}")
    database = parts.path.lstrip("/")
    if not database:
        raise ConfigError(f"{variable} names no database (the path after the host): {redact(value)!r}")
    del port
    return urlunsplit(("postgresql", parts.netloc, parts.path, parts.query, ""))


def sqlalchemy_url(url: str) -> str:
    """The `postgresql+psycopg://` form of a normalized URL, for SQLAlchemy 2 with psycopg 3."""
    return "postgresql+psycopg://" + url.split("://", 1)[1]


def kombu_sql_url(url: str) -> str:
    """The `sqla+postgresql+psycopg://` form of a normalized URL, for kombu's SQLAlchemy transport."""
    return "sqla+postgresql+psycopg://" + url.split("://", 1)[1]


def psycopg_url(url: str) -> str:
    """The libpq form (`postgresql://`) of any accepted URL."""
    return "postgresql://" + url.split("://", 1)[1]


def with_database(url: str, database: str) -> str:
    """The same server URL pointing at another database."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, "/" + database, parts.query, ""))


def with_query(url: str, **params: str) -> str:
    """The URL with query parameters added or replaced (e.g. `application_name`)."""
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query))
    query.update(params)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(query), ""))


def redact(url: str) -> str:
    """The URL with its password replaced by `***`, safe to print."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparseable>"
    if parts.password:
        netloc = parts.netloc.replace(":" + parts.password + "@", ":***@")
        return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
    return url


def broker_kind(url: str, variable: str = ENV_CELERY_BROKER_URL) -> str:
    """`postgres`, `redis` or `rabbitmq` for a Celery broker URL; `ConfigError` for anything else."""
    scheme = url.split("://", 1)[0] if "://" in url else ""
    if scheme in BROKER_SCHEMES:
        return BROKER_SCHEMES[scheme]
    if scheme in POSTGRES_SCHEMES:
        return "postgres"
    known = ", ".join(sorted({"postgresql", "postgres", *BROKER_SCHEMES}))
    raise ConfigError(
        f"{variable} has an unknown broker scheme {scheme or '(none)'!r} in {redact(url)!r}; "
        f"use one of: {known}"
    )


def _port_answers(addr: str, timeout: float = 0.5) -> bool:
    host, _, port = addr.rpartition(":")
    try:
        with socket.create_connection((host or "127.0.0.1", int(port)), timeout=timeout):
            return True
    except (OSError, ValueError):
        return False


def embedded_url() -> str | None:
    """The URL of the embedded cluster that `make db-up` started, if its file exists and it answers."""
    try:
        url = EMBEDDED_URL_FILE.read_text().strip()
    except OSError:
        return None
    parts = urlsplit(url)
    if parts.hostname and parts.port and _port_answers(f"{parts.hostname}:{parts.port}"):
        return url
    return None


def discover_database_url(env: Mapping[str, str]) -> str:
    """The PostgreSQL to use when `DATABASE_URL` is unset (docs/architecture.md, "Settings and the database").

    In order: the embedded cluster of `make db-up`; then `LOCAL_PG_ADDR` (default 127.0.0.1:5432)
    if it answers; else a `ConfigError` that says to run `make db-up`.
    """
    url = embedded_url()
    if url:
        return url
    addr = env.get(ENV_LOCAL_PG_ADDR) or DEFAULT_LOCAL_PG_ADDR
    if ":" not in addr:
        raise ConfigError(f"{ENV_LOCAL_PG_ADDR} must be host:port, got {addr!r}")
    if _port_answers(addr):
        return f"postgresql://postgres@{addr}/postgres"
    raise ConfigError(
        f"no PostgreSQL found: {ENV_DATABASE_URL} is unset, no embedded cluster runs and nothing answers at "
        f"{addr} ({ENV_LOCAL_PG_ADDR}); run `make db-up` or set {ENV_DATABASE_URL}"
    )


def _int(env: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be an integer, got {raw!r}") from None
    if not low <= value <= high:
        raise ConfigError(f"{name} must be between {low} and {high}, got {value}")
    return value


@dataclass(frozen=True)
class Settings:
    """Everything the services read from the environment, validated."""

    database_url: str
    queue_database_url: str
    celery_broker_url: str
    redis_url: str
    rabbitmq_url: str
    admin_user: str
    admin_password: str
    secret_key: str
    port: int
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def broker(self) -> str:
        """The default broker's kind: `postgres`, `redis` or `rabbitmq`."""
        return broker_kind(self.celery_broker_url)

    @property
    def sqlalchemy_url(self) -> str:
        return sqlalchemy_url(self.database_url)

    @property
    def queue_sqlalchemy_url(self) -> str:
        return sqlalchemy_url(self.queue_database_url)

    def broker_url_for(self, broker: str) -> str:
        """The URL of a broker by kind, for runs that pick their broker."""
        if broker == "postgres":
            return kombu_sql_url(self.queue_database_url)
        if broker == "redis":
            return self.redis_url
        if broker == "rabbitmq":
            return self.rabbitmq_url
        raise ConfigError(f"unknown broker {broker!r}; use postgres, redis or rabbitmq")


def host_name(env: Mapping[str, str] | None = None) -> str:
    """This machine's name for heartbeats and executors: `BENCH_HOST`, else the hostname."""
    env = os.environ if env is None else env
    return env.get(ENV_HOST) or socket.gethostname()


def fly_machine_id(env: Mapping[str, str] | None = None) -> str | None:
    """The Fly machine this process runs on, or None off Fly."""
    env = os.environ if env is None else env
    return env.get(ENV_FLY_MACHINE_ID) or None


def fly_app_name(env: Mapping[str, str] | None = None) -> str | None:
    """The Fly app this process belongs to, or None off Fly."""
    env = os.environ if env is None else env
    return env.get(ENV_FLY_APP_NAME) or None


def sender_processes(env: Mapping[str, str] | None = None) -> int | None:
    """How many processes send an open-loop run's jobs (`BENCH_SENDER_PROCESSES`); None: chosen from the
    run's rate. `ConfigError` for anything but 0 to `MAX_SENDER_PROCESSES`."""
    env = os.environ if env is None else env
    return _int(env, ENV_SENDER_PROCESSES, 0, 0, MAX_SENDER_PROCESSES) or None


def load(env: Mapping[str, str] | None = None) -> Settings:
    """Read and validate the settings from `env` (default: the process environment)."""
    env = os.environ if env is None else env
    raw_db = env.get(ENV_DATABASE_URL)
    database_url = normalize_postgres_url(raw_db, ENV_DATABASE_URL) if raw_db else discover_database_url(env)
    raw_queue = env.get(ENV_QUEUE_DATABASE_URL)
    queue_database_url = (
        normalize_postgres_url(raw_queue, ENV_QUEUE_DATABASE_URL) if raw_queue else database_url
    )
    broker_url = env.get(ENV_CELERY_BROKER_URL) or kombu_sql_url(queue_database_url)
    kind = broker_kind(broker_url)
    if kind == "postgres" and not broker_url.startswith("sqla+"):
        broker_url = kombu_sql_url(normalize_postgres_url(broker_url, ENV_CELERY_BROKER_URL))
    redis_url = env.get(ENV_REDIS_URL) or DEFAULT_REDIS_URL
    if broker_kind(redis_url, ENV_REDIS_URL) != "redis":
        raise ConfigError(f"{ENV_REDIS_URL} must be a redis:// URL, got {redact(redis_url)!r}")
    rabbitmq_url = env.get(ENV_RABBITMQ_URL) or DEFAULT_RABBITMQ_URL
    if broker_kind(rabbitmq_url, ENV_RABBITMQ_URL) != "rabbitmq":
        raise ConfigError(f"{ENV_RABBITMQ_URL} must be an amqp:// URL, got {redact(rabbitmq_url)!r}")
    return Settings(
        database_url=database_url,
        queue_database_url=queue_database_url,
        celery_broker_url=broker_url,
        redis_url=redis_url,
        rabbitmq_url=rabbitmq_url,
        admin_user=env.get(ENV_ADMIN_USER) or "admin",
        admin_password=env.get(ENV_ADMIN_PASSWORD) or "",
        secret_key=env.get(ENV_SECRET_KEY) or "",
        port=_int(env, ENV_PORT, 8000, 1, 65535),
    )
