"""The one Celery configuration (no processes, no brokers): what each broker and configuration sets."""

from __future__ import annotations

import pytest
from kombu.transport import sqlalchemy as kombu_sql

from shared import celery_app, settings

ENV = {"DATABASE_URL": "postgres://u:pw@db.example:5432/app"}


@pytest.fixture
def s() -> settings.Settings:
    return settings.load(ENV)


def test_the_sql_broker_is_routed_to_the_queue_schema_and_records_its_polling_interval(s):
    conf = celery_app.config("postgres", s=s)
    assert conf["broker_url"] == "sqla+postgresql+psycopg://u:pw@db.example:5432/app"
    assert conf["broker_transport_options"]["connect_args"]["options"] == "-c search_path=queue"
    assert "polling_interval" not in conf["broker_transport_options"]  # it would reach create_engine
    assert conf["worker_enable_remote_control"] is False  # no fanout on this transport
    assert conf["bench_polling_interval"] == 1.0  # kombu's default, what users get


def test_make_app_sets_the_polling_interval_on_the_transport_class_and_describes_it(s, monkeypatch):
    monkeypatch.setattr(kombu_sql.Transport, "polling_interval", kombu_sql.Transport.polling_interval)
    app = celery_app.make_app("postgres", "reliable", polling_interval=0.25, s=s)
    assert kombu_sql.Transport.polling_interval == 0.25
    assert celery_app.describe(app) == {
        "broker": "postgres",
        "configuration": "reliable",
        "polling_interval": 0.25,
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "worker_prefetch_multiplier": 1,
        "result_backend": False,
    }


def test_defaults_keeps_celerys_task_settings(s):
    app = celery_app.make_app("rabbitmq", s=s)
    assert app.conf.task_acks_late is False
    assert app.conf.task_reject_on_worker_lost is None
    assert app.conf.worker_prefetch_multiplier == 4
    assert "worker_enable_remote_control" not in celery_app.config("rabbitmq", s=s)


def test_redis_visibility_timeout_and_restore_sweep_are_settings(s):
    conf = celery_app.config("redis", "reliable", visibility_timeout=5, restore_interval=1, s=s)
    assert conf["broker_url"] == settings.DEFAULT_REDIS_URL
    assert conf["broker_transport_options"] == {
        "visibility_timeout": 5,
        "unacked_restore_interval": 1,
        "unacked_restore_throttle": 1,
    }
    plain = celery_app.make_app("redis", s=s)
    assert celery_app.describe(plain)["visibility_timeout"] == celery_app.DEFAULT_REDIS_VISIBILITY_TIMEOUT
    assert "broker_transport_options" not in celery_app.config("redis", s=s)


def test_the_result_backend_is_the_database_in_the_queue_schema(s):
    conf = celery_app.config("redis", result_backend=True, s=s)
    assert conf["result_backend"] == "db+postgresql+psycopg://u:pw@db.example:5432/app"
    assert conf["database_table_schemas"] == {"task": "queue", "group": "queue"}
    assert conf["task_ignore_result"] is False
    assert celery_app.config("redis", s=s)["task_ignore_result"] is True  # off for the benchmark


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"broker": "kafka"}, "unknown broker 'kafka'"),
        ({"configuration": "fast"}, "unknown Celery configuration 'fast'"),
        ({"polling_interval": 0}, "polling interval must be positive"),
        ({"broker": "redis", "visibility_timeout": -5}, "visibility timeout must be positive"),
    ],
)
def test_bad_values_are_config_errors(s, kwargs, fragment):
    with pytest.raises(settings.ConfigError, match=fragment):
        celery_app.config(s=s, **kwargs)


def test_send_refuses_an_unknown_task_before_publishing(s):
    from shared import workloads

    with pytest.raises(workloads.UnknownTask):
        celery_app.send(celery_app.make_app("postgres", s=s), "nope")
    assert celery_app.task_name("noop") == "bench.noop"
