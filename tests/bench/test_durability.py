"""The durability read-out: what each variant promises, read from its servers themselves
(docs/benchmark.md, "Durability")."""

from __future__ import annotations

import psycopg
import redis
from kombu import Connection

from shared import celery_app, settings
from shared.bench import adapters


def test_pgqueue_reports_the_servers_own_fsync_and_synchronous_commit(database_url):
    d = adapters.get("pgqueue").durability({}, settings.load())
    with psycopg.connect(database_url) as conn:
        for name in ("fsync", "synchronous_commit", "server_version"):
            assert d[name] == conn.execute(f"SHOW {name}").fetchone()[0], name
    assert d["server"] == "postgresql" and d["synchronous_commit"] in d["promise"]


def test_a_relaxed_postgresql_is_stated_not_hidden(database_url):
    # synchronous_commit off for the database the queue lives in: the read-out says commits can be lost.
    with psycopg.connect(database_url, autocommit=True) as conn:
        name = conn.execute("SELECT current_database()").fetchone()[0]
        conn.execute(f'ALTER DATABASE "{name}" SET synchronous_commit = off')
    d = adapters.get("pgqueue").durability({}, settings.load())
    assert d["synchronous_commit"] == "off" and "can be lost" in d["promise"]


def test_the_sql_broker_is_labelled_experimental(database_url):
    d = adapters.get("celery").durability({"broker": "postgres"}, settings.load())
    assert d["fsync"] and "experimental" in d["promise"]


def test_redis_reports_its_own_persistence_and_version(database_url, redis_available):
    s = settings.load()
    d = adapters.get("celery").durability({"broker": "redis"}, s)
    client = redis.Redis.from_url(celery_app.broker_url("redis", s))
    try:
        conf = client.config_get("*")
        assert (d["appendonly"], d["save"]) == (conf["appendonly"], conf["save"])
        assert d["version"] == client.info("server")["redis_version"]
    finally:
        client.close()
    if conf["appendonly"] == "no":
        assert "loses the messages" in d["promise"]


def test_rabbitmq_reports_its_version_and_reliable_turns_on_publisher_confirms(
    database_url, rabbitmq_available
):
    s = settings.load()
    celery = adapters.get("celery")
    defaults = celery.durability({"broker": "rabbitmq", "config": "defaults"}, s)
    reliable = celery.durability({"broker": "rabbitmq", "config": "reliable"}, s)
    with Connection(celery_app.broker_url("rabbitmq", s)) as conn:
        conn.ensure_connection(max_retries=1)
        version = conn.connection.server_properties["version"]
    assert defaults["version"] == (version.decode() if isinstance(version, bytes) else version)
    assert defaults["durable_queues"] and defaults["persistent_messages"]
    assert (defaults["publisher_confirms"], reliable["publisher_confirms"]) == (False, True)
    # the confirms the read-out states are the ones the app publishes with
    conf = celery_app.config("rabbitmq", "reliable", s=s)
    assert conf["broker_transport_options"]["confirm_publish"] is True


def test_pgqueues_relaxed_variant_reads_and_states_its_own_commit(database_url):
    s = settings.load()
    relaxed = adapters.get("pgqueue").durability({"commit": "relaxed"}, s)
    # read through a connection opened as the relaxed workers open theirs
    assert relaxed["synchronous_commit"] == "off" and "can be lost" in relaxed["promise"]
    env = adapters.get("pgqueue").worker_environment({"commit": "relaxed"}, database_url)
    with psycopg.connect(settings.psycopg_url(env[settings.ENV_QUEUE_DATABASE_URL])) as conn:
        assert conn.execute("SHOW synchronous_commit").fetchone()[0] == "off"
    assert adapters.get("pgqueue").worker_environment({}, database_url) == {}


def test_every_adapter_states_a_promise_read_from_its_server(database_url):
    # A contender without a read-out would leave its row of the report's durability table empty.
    s = settings.load()
    with psycopg.connect(database_url) as conn:
        commit = conn.execute("SHOW synchronous_commit").fetchone()[0]
    for name in adapters.NAMES:
        adapter = adapters.get(name)
        if adapter.unavailable({}, s):
            continue
        d = adapter.durability({}, s)
        assert d.get("promise"), name
        if d.get("server") == "postgresql":
            assert d["synchronous_commit"] == commit, name


def test_every_supervised_adapter_says_what_brings_a_killed_workers_jobs_back():
    from shared.bench.adapters.base import SupervisedAdapter
    from shared.bench.spec import Case

    for name in adapters.NAMES:
        adapter = adapters.get(name)
        if isinstance(adapter, SupervisedAdapter):
            case = Case(adapter=name, jobs=10, processes=2, slots=1)
            assert adapter.redelivery(case), name
