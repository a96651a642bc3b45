"""Results read from the database for the admin pages and the report: a run's chart data and figures, a
case's repetitions with their estimates, a comparison of cases. Every read goes through `store`.

Each function takes the caller's psycopg connection, or opens one of its own on `DATABASE_URL`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import psycopg

from shared import db, settings
from shared.bench import store
from shared.bench.report import figures


@contextlib.contextmanager
def _connection(conn: psycopg.Connection | None) -> Iterator[psycopg.Connection]:
    if conn is not None:
        yield conn
        return
    with db.connect(settings.load().database_url, role="harness-report", autocommit=True) as own:
        yield own


def _run(conn: psycopg.Connection | None, run_id: int) -> dict[str, Any]:
    with _connection(conn) as c:
        rows = store.runs(c, ids=[run_id])
    if not rows:
        raise LookupError(f"no run {run_id}")
    return rows[0]


def run_series(run_id: int, conn: psycopg.Connection | None = None) -> dict[str, Any]:
    """Chart data of one run: throughput over time, latency CDF points, CPU and memory per service."""
    row = _run(conn, run_id)
    m = row["metrics"] or {}
    samples = m.get("resource_samples") or []
    services = sorted({k for s in samples for k in s if k != "t"})
    return {
        "run_id": run_id,
        "case_key": row["case_key"],
        "throughput": m.get("throughput_series") or {"t": [], "jobs_per_second": []},
        "latency_cdf": {
            kind: {"ms": [p[0] for p in pts], "fraction": [p[1] for p in pts]}
            for kind, pts in (m.get("latency_cdf") or {}).items()
        },
        "resources": {
            svc: {
                "t": [s["t"] for s in samples if svc in s],
                "cpu_s": [s[svc]["cpu_s"] for s in samples if svc in s],
                "mem_mb": [s[svc]["mem_mb"] for s in samples if svc in s],
            }
            for svc in services
        },
    }


def run_summary(run_id: int, conn: psycopg.Connection | None = None) -> dict[str, Any]:
    """Every figure of one run (no time series)."""
    return figures.run_view(_run(conn, run_id))


def case_summary(experiment_id: int, case_key: str, conn: psycopg.Connection | None = None) -> dict[str, Any]:
    """One case of an experiment: its repetitions and, per figure, the median with its 95% interval."""
    with _connection(conn) as c:
        runs = store.runs(c, experiment_id=experiment_id, case_key=case_key)
    if not runs:
        raise LookupError(f"no case {case_key!r} in experiment {experiment_id}")
    return figures.case_from_runs(case_key, runs)


def compare(
    items: list[int] | list[str] | list[tuple[int, str]],
    conn: psycopg.Connection | None = None,
    experiment_id: int | None = None,
) -> dict[str, Any]:
    """Compare cases side by side: given run ids (each run's case in its experiment), case keys (of
    `experiment_id`, else the latest experiment that has them) or (experiment_id, case_key) pairs."""
    with _connection(conn) as c:
        pairs: list[tuple[int, str]] = []
        for it in items:
            if isinstance(it, tuple):
                pairs.append((int(it[0]), str(it[1])))
            elif isinstance(it, int):
                row = c.execute(store.q("run_case"), {"id": it}).fetchone()
                if row is None:
                    raise LookupError(f"no run {it}")
                pairs.append((row[0], row[1]))
            else:
                eid = experiment_id
                if eid is None:
                    row = c.execute(store.q("case_latest_experiment"), {"case_key": it}).fetchone()
                    eid = row[0] if row else None
                if eid is None:
                    raise LookupError(f"no case {it!r}")
                pairs.append((eid, it))
        cases = [figures.case_from_runs(k, store.runs(c, experiment_id=e, case_key=k)) for e, k in pairs]
    return figures.compare_cases([x for x in cases if x["repetitions"]])


def headline(experiment_id: int, conn: psycopg.Connection | None = None) -> dict[str, list[str]]:
    """The verdicts at the top of `summary.md`, from the experiment's rows (`figures.headline`)."""
    with _connection(conn) as c:
        runs = store.runs(c, experiment_id=experiment_id)
    if not runs:
        raise LookupError(f"no run in experiment {experiment_id}")
    by_case: dict[str, list[dict[str, Any]]] = {}
    for r in runs:
        by_case.setdefault(r["case_key"], []).append(r)
    cases = [figures.case_from_runs(k, rs) for k, rs in by_case.items()]
    return figures.headline(figures.comparisons(cases), figures.sweep(runs))
