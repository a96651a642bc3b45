"""The one Celery configuration, shared by the web side (which sends) and the worker (docs/celery.md).

Task names are `bench.<workload>`. The web sends with `send_task` and never imports the worker; `meta`
travels in the message headers (`bench_meta`). Two named configurations: `defaults` (Celery's own task
settings, what most users run) and `reliable` (`task_acks_late`, `task_reject_on_worker_lost`,
`worker_prefetch_multiplier=1`).
"""

from __future__ import annotations

from typing import Any

from celery import Celery

from shared import settings as settings_mod
from shared import workloads

TASK_PREFIX = "bench."
DEFAULT_QUEUE = "bench"
META_HEADER = "bench_meta"
CONFIGURATIONS = ("defaults", "reliable")
BROKERS = ("postgres", "redis", "rabbitmq")
DEFAULT_SQL_POLLING_INTERVAL = 1.0
"""kombu's own default for the SQL transport: what users get unless they change it."""
DEFAULT_REDIS_VISIBILITY_TIMEOUT = 3600.0
"""kombu's own default for Redis: an unacknowledged message is handed out again after an hour."""

RELIABLE = {
    "task_acks_late": True,
    "task_reject_on_worker_lost": True,
    "worker_prefetch_multiplier": 1,
}


def task_name(workload: str) -> str:
    """The Celery task name of a shared workload."""
    return TASK_PREFIX + workload


def workload_of(name: str) -> str:
    return name[len(TASK_PREFIX) :] if name.startswith(TASK_PREFIX) else name


def broker_url(broker: str, s: settings_mod.Settings | None = None) -> str:
    """The URL for broker kind `broker` (`postgres`, `redis`, `rabbitmq`) from the settings."""
    s = s or settings_mod.load()
    if broker not in BROKERS:
        raise settings_mod.ConfigError(f"unknown broker {broker!r}; use one of {', '.join(BROKERS)}")
    if broker == settings_mod.broker_kind(s.celery_broker_url):
        return s.celery_broker_url
    return s.broker_url_for(broker)


def config(
    broker: str = "postgres",
    configuration: str = "defaults",
    *,
    result_backend: bool = False,
    polling_interval: float = DEFAULT_SQL_POLLING_INTERVAL,
    visibility_timeout: float | None = None,
    restore_interval: float | None = None,
    s: settings_mod.Settings | None = None,
) -> dict[str, Any]:
    """The complete Celery configuration of one run; recorded with the run as it is.

    `polling_interval` applies to the SQL broker only (kombu's default 1 s). `visibility_timeout` and
    `restore_interval` apply to Redis only: how old an unacknowledged message must be before a worker
    hands it out again, and how often a worker sweeps for such messages (kombu's defaults: 3600 s,
    and a sweep roughly every 100 s). Keys starting with `bench_` are ours, not Celery's: `make_app`
    keeps them apart and `describe` reports them.
    """
    if polling_interval <= 0:
        raise settings_mod.ConfigError(f"the SQL polling interval must be positive, got {polling_interval}")
    for name, value in (("visibility timeout", visibility_timeout), ("restore interval", restore_interval)):
        if value is not None and value <= 0:
            raise settings_mod.ConfigError(f"the Redis {name} must be positive, got {value}")
    s = s or settings_mod.load()
    if configuration not in CONFIGURATIONS:
        raise settings_mod.ConfigError(
            f"unknown Celery configuration {configuration!r}; use one of {', '.join(CONFIGURATIONS)}"
        )
    url = broker_url(broker, s)
    conf: dict[str, Any] = {
        "broker_url": url,
        "task_default_queue": DEFAULT_QUEUE,
        "task_ignore_result": not result_backend,
        "broker_connection_retry_on_startup": True,
        "worker_hijack_root_logger": False,
        "task_serializer": "json",
        "accept_content": ["json"],
        "enable_utc": True,
    }
    transport_options: dict[str, Any] = {}
    if broker == "postgres":
        # kombu's SQL transport has no schema option; its engine is routed to schema `queue`
        # through search_path. Options here go to create_engine, so polling_interval is set on
        # the transport class by the worker (see `apply_polling_interval`).
        transport_options["connect_args"] = {
            "options": "-c search_path=queue",
            "application_name": "bench-celery-broker",
        }
        transport_options["pool_pre_ping"] = True
        # The SQL transport has no fanout: remote control, inspect and events cannot work on it.
        conf["worker_enable_remote_control"] = False
        conf["bench_polling_interval"] = polling_interval
    if broker == "redis":
        if visibility_timeout is not None:
            transport_options["visibility_timeout"] = visibility_timeout
        if restore_interval is not None:
            # kombu sweeps every `interval * throttle` seconds; throttle 1 makes the interval exact.
            transport_options["unacked_restore_interval"] = restore_interval
            transport_options["unacked_restore_throttle"] = 1
        conf["bench_visibility_timeout"] = (
            visibility_timeout if visibility_timeout is not None else DEFAULT_REDIS_VISIBILITY_TIMEOUT
        )
        conf["bench_restore_interval"] = restore_interval
    if broker == "rabbitmq" and configuration == "reliable":
        # Publisher confirms: a publish returns once RabbitMQ has taken the message (persistent, on a
        # durable queue), the promise pgqueue's committed INSERT makes (docs/benchmark.md, "Durability").
        transport_options["confirm_publish"] = True
    if transport_options:
        conf["broker_transport_options"] = transport_options
    if result_backend:
        conf["result_backend"] = "db+" + settings_mod.sqlalchemy_url(s.queue_database_url)
        conf["database_table_schemas"] = {"task": "queue", "group": "queue"}
        conf["database_engine_options"] = {"connect_args": {"application_name": "bench-celery-results"}}
        conf["result_extended"] = True
    if configuration == "reliable":
        conf.update(RELIABLE)
    return conf


def apply_polling_interval(conf: dict[str, Any]) -> None:
    """Set the SQL transport's polling interval on its class (it cannot travel in transport options)."""
    interval = conf.get("bench_polling_interval")
    if interval is not None:
        from kombu.transport import sqlalchemy as kombu_sql

        kombu_sql.Transport.polling_interval = float(interval)


def describe(app: Celery) -> dict[str, Any]:
    """What a run records about its Celery side: broker, configuration and the settings that decide
    delivery (the SQL polling interval, Redis's visibility timeout, acks and prefetch)."""
    conf = app.conf
    return {
        **conf.bench,
        "task_acks_late": bool(conf.task_acks_late),
        "task_reject_on_worker_lost": bool(conf.task_reject_on_worker_lost),
        "worker_prefetch_multiplier": int(conf.worker_prefetch_multiplier),
        "result_backend": bool(conf.result_backend),
    }


def make_app(broker: str = "postgres", configuration: str = "defaults", **kwargs: Any) -> Celery:
    """A Celery app with the shared configuration; the worker registers the tasks on it."""
    conf = config(broker, configuration, **kwargs)
    app = Celery("bench", set_as_current=False)
    app.conf.update({k: v for k, v in conf.items() if not k.startswith("bench_")})
    app.conf.bench = {
        "broker": broker,
        "configuration": configuration,
        **{k.removeprefix("bench_"): v for k, v in conf.items() if k.startswith("bench_")},
    }
    apply_polling_interval(conf)
    return app


def send(
    app: Celery,
    workload: str,
    params: dict[str, Any] | None = None,
    meta: dict[str, Any] | None = None,
    queue: str = DEFAULT_QUEUE,
    **options: Any,
):
    """Send one job by name (never importing the worker); `meta` travels in the headers."""
    workloads.get(workload)  # an unknown task is an error at send time, not a lost message
    return app.send_task(
        task_name(workload), kwargs=params or {}, queue=queue, headers={META_HEADER: meta or {}}, **options
    )
