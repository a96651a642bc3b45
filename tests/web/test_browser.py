"""Browser tests: headless Chromium (Debian's, driven by Playwright) against a real gunicorn and real workers.

Never `playwright install`: it downloads a browser. Without /usr/bin/chromium the tests skip with a
reason, except under CI=true where that is a failure. Each test saves a screenshot of every page it
visits under its output folder.
"""

from __future__ import annotations

import importlib.util
import json
import os
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from shared import embedded, pgqueue, settings

from ..conftest import OUTPUT, create_database, drop_database
from ..support import VENV_BIN, Proc, service_env, wait_until
from .conftest import BASIC, PASSWORD

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]

pytestmark = pytest.mark.slow


def require_chromium() -> None:
    if Path(CHROMIUM).exists():
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"Chromium is not installed at {CHROMIUM}, and CI=true requires it")
    pytest.skip(f"Chromium is not installed at {CHROMIUM} (apt-get install chromium)")


class Live:
    """The running web service and its database."""

    def __init__(self, url: str, database_url: str, logs: Path) -> None:
        self.url = url
        self.database_url = database_url
        self.logs = logs
        self.engine = sa.create_engine(settings.sqlalchemy_url(database_url))

    def api(self, path: str):
        req = urllib.request.Request(self.url + path, headers=BASIC)
        with urllib.request.urlopen(req, timeout=10) as resp:
            return json.loads(resp.read())

    def worker(self, name: str, *args: str) -> Proc:
        script = "bench-pgqueue-worker" if name.startswith("pgqueue") else "bench-celery-worker"
        env = service_env(self.database_url, BENCH_SPOOL_DIR=str(self.logs / "spool"))
        return Proc([str(VENV_BIN / script), *args], env, self.logs / f"{name}.log")


@pytest.fixture(scope="module")
def live(pg_server: str, template_db: str) -> Iterator[Live]:
    require_chromium()
    name = f"bench_web_{uuid.uuid4().hex[:8]}"
    database_url = create_database(pg_server, name, template=template_db)
    logs = OUTPUT / "web-live"
    (logs / "spool").mkdir(parents=True, exist_ok=True)
    port = embedded.free_port()
    web = Proc(
        [str(VENV_BIN / "bench-web")],
        service_env(
            database_url, PORT=str(port), WEB_CONCURRENCY="1", WEB_THREADS="8", BENCH_WEB_HOST="127.0.0.1"
        ),
        logs / "web.log",
    )
    url = f"http://127.0.0.1:{port}"

    def up() -> bool:
        with urllib.request.urlopen(url + "/up", timeout=2) as resp:
            return resp.status == 200

    try:
        wait_until(up, 60, message="gunicorn answering /up")
        server = Live(url, database_url, logs)
        yield server
        server.engine.dispose()
    finally:
        web.stop()
        drop_database(pg_server, name)


@pytest.fixture(scope="module")
def browser(live: Live):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield b
        b.close()


@pytest.fixture
def page(browser, live: Live, output_dir: Path):
    """A logged-in page; `page.shot(name)` saves a screenshot under the test's output folder."""
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    pg = context.new_page()
    pg.set_default_timeout(20_000)
    shots = iter(range(1, 100))
    pg.shot = lambda name: pg.screenshot(
        path=str(output_dir / f"{next(shots):02d}-{name}.png"), full_page=True
    )
    pg.goto(live.url + "/runs/")
    assert "/login" in pg.url
    pg.fill("input[name=username]", "admin")
    pg.fill("input[name=password]", PASSWORD)
    pg.click("button[type=submit]")
    pg.wait_for_url("**/runs/")
    yield pg
    context.close()


def reload_until(pg, predicate, timeout: float, message: str) -> None:
    def check():
        pg.reload()
        return predicate()

    wait_until(check, timeout, interval=0.5, message=message)


def enqueue(
    live: Live, n: int, queue: str, task: str = "noop", params: dict | None = None, **kw
) -> list[int]:
    with live.engine.begin() as conn:
        return [pgqueue.enqueue(conn, task, params or {}, queue=queue, **kw) for _ in range(n)]


def states(live: Live, ids: list[int]) -> list[str]:
    with live.engine.connect() as conn:
        return [pgqueue.get_job(conn, i)["state"] for i in ids]


def pgqueue_worker_runtime() -> bool:
    return importlib.util.find_spec("pgqueue_worker.supervisor") is not None


def test_log_in_and_out(browser, live, output_dir):
    context = browser.new_context()
    pg = context.new_page()
    pg.goto(live.url + "/pgqueue/jobs")
    assert "/login" in pg.url
    pg.screenshot(path=str(output_dir / "01-login.png"))
    pg.fill("input[name=username]", "admin")
    pg.fill("input[name=password]", "wrong")
    pg.click("button[type=submit]")
    assert pg.locator(".flash.error").is_visible()
    pg.fill("input[name=username]", "admin")
    pg.fill("input[name=password]", PASSWORD)
    pg.click("button[type=submit]")
    pg.wait_for_url("**/pgqueue/jobs")  # back where the login started
    pg.screenshot(path=str(output_dir / "02-after-login.png"))
    pg.click("form.logout button")
    pg.wait_for_url("**/login")
    context.close()


def insert_run(live: Live, **fields) -> int:
    base = {
        "adapter": "pgqueue",
        "job_count": 100,
        "scheduling_mode": "bulk",
        "status": "completed",
        "metrics": json.dumps({"throughput": {"jobs_per_s": 1000.0}}),
    }
    base.update(fields)
    cols = ", ".join(base)
    vals = ", ".join(f"CAST(:{k} AS jsonb)" if k == "metrics" else f":{k}" for k in base)
    with live.engine.begin() as conn:
        # column names come from this test's own dict, values are bound
        sql = f"INSERT INTO benchmark_runs ({cols}) VALUES ({vals}) RETURNING id"  # noqa: S608
        return conn.execute(sa.text(sql), base).scalar()


def test_compare_two_runs(page, live):
    # metrics in the shape the benchmark library stores them
    a = insert_run(live, adapter="pgqueue", metrics=json.dumps({"throughput": 1234.0, "drain_seconds": 0.5}))
    b = insert_run(
        live,
        adapter="celery",
        broker="redis",
        metrics=json.dumps({"throughput": 567.0, "drain_seconds": 1.5}),
    )
    page.goto(live.url + "/runs/")
    page.shot("runs")
    page.check(f"#recent-runs input[value='{a}']")
    page.check(f"#recent-runs input[value='{b}']")
    page.click("#recent-runs + button")
    page.wait_for_selector("#comparison")
    page.shot("compare")
    header = page.locator("#comparison thead").inner_text()
    assert f"Run {a}" in header and f"Run {b}" in header
    rows = page.locator("#comparison tbody tr").evaluate_all(
        "rs => rs.map(r => Array.from(r.cells).map(c => c.innerText.trim()))"
    )
    # the figure as summary.md names it, with its unit, then one column per run
    (row,) = [r for r in rows if r[0] == "throughput"]
    assert row[1] == "jobs/s"
    heads = page.locator("#comparison thead th").all_inner_texts()[2:]
    shown = {h: float(v.replace(",", "")) for h, v in zip(heads, row[2:], strict=True)}
    assert shown == {f"Run {a}": 1234.0, f"Run {b}": 567.0}


def test_filter_pgqueue_jobs(page, live):
    tag = uuid.uuid4().hex[:6]
    a = enqueue(live, 3, f"fa-{tag}")
    enqueue(live, 2, f"fb-{tag}", task="sleep", params={"ms": 1})
    page.goto(live.url + "/pgqueue/jobs")
    page.fill("#job-filters input[name=queue]", f"fa-{tag}")
    page.select_option("#job-filters select[name=state]", "available")
    page.click("#job-filters button[type=submit]")
    page.wait_for_url(f"**queue=fa-{tag}**")
    page.shot("jobs-filtered")
    shown = sorted(
        int(x)
        for x in page.locator("#jobs tbody tr[data-job]").evaluate_all("rs => rs.map(r => r.dataset.job)")
    )
    assert shown == sorted(a)
    page.goto(live.url + f"/pgqueue/jobs/{a[0]}")
    page.shot("job-detail")
    page.goto(live.url + "/pgqueue/")
    page.shot("pgqueue-overview")


@pytest.mark.skipif(
    not pgqueue_worker_runtime(), reason="the pgqueue worker runtime is not merged into this build yet"
)
def test_retry_a_discarded_job_and_see_it_complete(page, live):
    queue = f"rt-{uuid.uuid4().hex[:6]}"
    # Fails its first attempt and, with one attempt allowed, is discarded; its retry (attempt 2) succeeds.
    (job_id,) = enqueue(live, 1, queue, task="fail_then_succeed", max_attempts=1)
    worker = live.worker(f"pgqueue-{queue}", "--queues", queue, "--threads", "2", "--poll-interval", "0.2")
    try:
        wait_until(lambda: states(live, [job_id]) == ["discarded"], 60, message="the job discarded")
        page.goto(live.url + f"/pgqueue/jobs?queue={queue}&state=discarded")
        page.shot("discarded")
        page.check(f"#jobs input[value='{job_id}']")
        page.click("#jobs-form button[value=retry]")
        page.wait_for_selector(".flash")
        assert "1 of 1" in page.locator(".flash").inner_text()
        wait_until(lambda: states(live, [job_id]) == ["completed"], 60, message="the retried job completed")
        page.goto(live.url + f"/pgqueue/jobs/{job_id}")
        assert page.locator("#job-state").inner_text() == "completed"
        assert page.locator(".job-error").count() >= 1  # the discarded attempt's error stays on record
        page.shot("completed")
    finally:
        worker.stop()


@pytest.mark.skipif(
    not pgqueue_worker_runtime(), reason="the pgqueue worker runtime is not merged into this build yet"
)
def test_pause_a_queue_and_resume_it(page, live):
    tag = uuid.uuid4().hex[:6]
    qa, qb = f"pa-{tag}", f"pb-{tag}"
    worker = live.worker(
        f"pgqueue-{tag}", "--queues", f"{qa},{qb}", "--threads", "2", "--poll-interval", "0.2"
    )
    try:
        page.goto(live.url + "/pgqueue/queues")
        page.fill("#pause-by-name input[name=name]", qa)
        page.click("#pause-by-name button")
        page.wait_for_selector(f"#queues tr[data-queue='{qa}'] .queue-state:text('paused')")
        page.shot("paused")
        a = enqueue(live, 3, qa)
        b = enqueue(live, 3, qb)
        wait_until(lambda: set(states(live, b)) == {"completed"}, 60, message="queue B's jobs completed")
        assert set(states(live, a)) == {"available"}
        page.goto(live.url + f"/pgqueue/jobs?queue={qa}")
        page.shot("a-still-available")
        page.goto(live.url + "/pgqueue/queues")
        page.locator(f"#queues tr[data-queue='{qa}'] button", has_text="Resume").click()
        page.wait_for_selector(f"#queues tr[data-queue='{qa}'] .queue-state:text('active')")
        wait_until(lambda: set(states(live, a)) == {"completed"}, 60, message="queue A's jobs completed")
        page.goto(live.url + f"/pgqueue/jobs?queue={qa}")
        page.shot("a-completed")
    finally:
        worker.stop()


def test_celery_page_shows_workers_on_redis_and_the_sql_broker_statement(page, live, redis_available):
    queue = f"web-{uuid.uuid4().hex[:6]}"
    worker = live.worker(
        f"celery-{queue}", "--broker", "redis", "--queues", queue, "--pool", "threads", "--concurrency", "1"
    )
    try:

        def worker_id():
            with live.engine.connect() as conn:
                return conn.execute(
                    sa.text("SELECT id FROM queue.workers WHERE adapter = 'celery' AND :q = ANY(queues)"),
                    {"q": queue},
                ).scalar()

        wid = wait_until(worker_id, 60, message="the Redis worker's heartbeat")
        page.goto(live.url + "/celery/")
        inspected = page.locator(".inspect[data-broker=redis] .inspected-worker", has_text=wid)
        reload_until(page, lambda: inspected.count() == 1, 45, "the Redis worker answering inspect")
        assert page.locator("#heartbeats tr[data-broker=redis]", has_text=wid).count() == 1
        assert page.locator(f".broker[data-broker=redis] tr[data-queue='{queue}']").count() == 1
        statement = page.locator("#sql-broker-limits").inner_text()
        assert "no fanout" in statement and "inspect" in statement
        page.shot("celery")
        page.goto(live.url + "/celery/tasks")
        page.shot("celery-tasks")
    finally:
        worker.stop()


def test_admin_tables_are_served_with_local_assets(page, live):
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    for path in [
        "/admin/experiments/",
        "/admin/benchmark_runs/",
        "/admin/workers/",
        "/admin/pgqueue_queues/",
        "/admin/pgqueue_cron/",
    ]:
        page.goto(live.url + path)
        page.shot(path.strip("/").replace("/", "-"))
    page.goto(live.url + "/runs/new")
    page.shot("start-form")
    assert requests and all(r.startswith(live.url) for r in requests), [
        r for r in requests if not r.startswith(live.url)
    ]


def bench_library() -> bool:
    return importlib.util.find_spec("shared.bench") is not None


@pytest.mark.skipif(
    not bench_library(), reason="the benchmark library (shared.bench) is not merged into this build yet"
)
def test_start_a_run_from_the_form_watch_it_finish_and_check_its_charts(page, live):
    page.goto(live.url + "/runs/new")
    page.select_option("#mode", "managed")
    for box in page.locator("input[name=adapters]").all():
        box.set_checked(box.get_attribute("value") == "pgqueue")
    page.fill("#job_count", "200")
    page.select_option("#workload", "noop")
    page.select_option("#scenario", "drain")
    page.fill("#processes", "1")
    page.fill("#slots", "2")
    page.fill("#repetitions", "1")
    page.shot("form")
    page.click("#experiment-form button[type=submit]")
    page.wait_for_url("**/runs/experiments/*")
    page.shot("started")
    status = page.locator("#experiment-status")
    # progress.js polls progress.json and reloads the page when the experiment ends
    wait_until(
        lambda: status.inner_text() in ("completed", "failed"), 180, interval=1, message="the run finished"
    )
    page.shot("finished")
    assert status.inner_text() == "completed", page.locator("dl.facts").inner_text()

    page.locator("table.case-runs a").first.click()
    page.wait_for_selector("#charts[data-loaded=true]")
    run_id = int(page.url.rstrip("/").rsplit("/", 1)[1])
    drawn = page.evaluate(
        """() => Array.from(document.querySelectorAll('#charts canvas')).map(c => ({
             id: c.dataset.chart,
             datasets: Chart.getChart(c).data.datasets.map(d => ({label: d.label, data: d.data.map(p => ({x: p.x, y: p.y}))}))
           }))"""
    )
    page.shot("run-detail")
    api = live.api(f"/api/runs/{run_id}/series")
    expected = [
        {"id": c["id"], "datasets": [{"label": d["label"], "data": d["data"]} for d in c["datasets"]]}
        for c in api["charts"]
    ]
    assert drawn == expected
    assert any(c["id"] == "throughput" and c["datasets"][0]["data"] for c in drawn), drawn

    page.locator("dl.facts a", has_text="pgqueue/").click()
    page.wait_for_selector("#estimates")
    assert page.locator("#estimates tr[data-figure]").count() > 5
    page.shot("case")
