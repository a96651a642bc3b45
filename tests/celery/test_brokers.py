"""Each broker with a real `celery worker`: a task sent from the web side runs, a failing task is retried
as configured, its result lands in `queue.celery_taskmeta`, and the heartbeat tells the worker's settings."""

from __future__ import annotations

import socket
import time

import pytest

from shared import celery_app, contract, db, settings
from shared.bench.adapters.brokers import delete_queue
from shared.bench.adapters.celery import WorkerOptions
from shared.bench.records import wait_finished

from .conftest import concurrently, running_worker, unique

pytestmark = pytest.mark.slow


def test_on_each_broker_a_task_runs_is_retried_and_its_result_is_stored(
    all_brokers, database_url, tmp_path, output_dir
):
    # The three brokers at once: each starts its own worker on its own queue.
    concurrently(
        lambda broker: check_broker(broker, database_url, tmp_path / broker, output_dir), all_brokers
    )


def check_broker(broker: str, database_url: str, spool_dir, output_dir) -> None:
    spool_dir.mkdir()
    queue = unique(f"t-{broker}")
    spec = WorkerOptions(
        broker=broker,
        pool="prefork",
        concurrency=2,
        queues=[queue],
        polling_interval=0.1,
        result_backend=True,
        loglevel="INFO",
    )
    # The web side: the shared configuration, `send_task` by name, never the worker's code.
    app = celery_app.make_app(broker, result_backend=True, polling_interval=0.1, s=settings.load())
    try:
        with running_worker(database_url, spec, spool_dir, output_dir / f"{broker}.log") as worker:
            info = worker.info
            assert info["broker"] == broker and info["configuration"] == "defaults"
            assert info["pool"] == "prefork" and info["concurrency"] == 2
            assert info["task_acks_late"] is False and info["worker_prefetch_multiplier"] == 4
            if broker == "postgres":
                assert info["polling_interval"] == 0.1
            if broker == "redis":
                assert info["visibility_timeout"] == celery_app.DEFAULT_REDIS_VISIBILITY_TIMEOUT

            # Remote control (inspect, control) broadcasts through a fanout exchange: it answers on Redis
            # and RabbitMQ; the SQL transport has no fanout, so nothing can answer there.
            node = f"{worker.worker_id}@{socket.gethostname()}"
            replies = app.control.inspect(destination=[node], timeout=2).ping()
            if broker == "postgres":
                assert replies is None
            else:
                assert replies == {node: {"ok": "pong"}}

            run_id = 4242
            ok = celery_app.send(
                app, "noop", {}, {"run_id": run_id, "seq": 1, "enqueued_at": time.time()}, queue=queue
            )
            retried = celery_app.send(
                app,
                "fail_then_succeed",
                {"fail_attempts": 2},
                {"run_id": run_id, "seq": 2, "enqueued_at": time.time()},
                queue=queue,
            )
            assert ok.get(timeout=60) is None
            assert retried.get(timeout=60) is None
            events = wait_finished(spool_dir, run_id, 2, 30)
    finally:
        delete_queue(app, broker, queue)

    # The retry policy of the contract: attempts 1 and 2 fail, 3 succeeds, after backoffs of ~1 s and ~2 s;
    # `meta` survives the retries (it travels in the headers of the re-sent message).
    second = [(e.kind, e.attempt) for e in events if e.seq == 2]
    assert second == [("start", 1), ("fail", 1), ("start", 2), ("fail", 2), ("start", 3), ("finish", 3)]
    ts = {(e.kind, e.attempt): e.ts for e in events if e.seq == 2}
    low = 1 - 0.1  # the jitter is +-10 %
    assert ts[("start", 2)] - ts[("fail", 1)] >= contract.retry_delay.__defaults__[0] * low
    assert ts[("start", 3)] - ts[("fail", 2)] >= 2 * contract.retry_delay.__defaults__[0] * low
    assert [e.kind for e in events if e.seq == 1] == ["start", "finish"]

    with db.connect(database_url) as conn:
        rows = {
            r[0]: tuple(r[1:])
            for r in conn.execute(
                "SELECT task_id, status, name, retries, queue FROM queue.celery_taskmeta WHERE task_id = ANY(%s)",
                ([ok.id, retried.id],),
            ).fetchall()
        }
        elsewhere = conn.execute("SELECT to_regclass('public.celery_taskmeta')").fetchone()[0]
    assert rows[ok.id] == ("SUCCESS", "bench.noop", 0, queue)
    assert rows[retried.id] == ("SUCCESS", "bench.fail_then_succeed", 2, queue)
    assert elsewhere is None
