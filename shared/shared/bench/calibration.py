"""The calibration row: the raw SQL ceiling for the same work on the same database, in the same run.

The work is what a queue must do at the least: insert N rows in one COPY, then claim them in batches
with `FOR UPDATE SKIP LOCKED` and delete them, one client, no job bodies. pgqueue's own measurement
(`shared.pgqueue.calibrate.raw_ceiling`) is used when it exists, so `make bench` and `make bench-pgqueue`
report the same ceiling; this fallback does the same thing in a temporary table.
"""

from __future__ import annotations

import importlib
import time
from typing import Any

from shared import db

CLAIM_BATCH = 100


def _own_ceiling(url: str, jobs: int) -> dict[str, Any]:
    with db.connect(url, role="harness-calibration") as conn:
        conn.execute(
            "CREATE TEMP TABLE calib_jobs (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, "
            "task text NOT NULL, args jsonb NOT NULL)"
        )
        conn.commit()
        started = time.perf_counter()
        with conn.cursor().copy("COPY calib_jobs (task, args) FROM STDIN") as copy:
            for _ in range(jobs):
                copy.write_row(("noop", "{}"))
        conn.commit()
        inserted = time.perf_counter()
        done = 0
        while True:
            rows = conn.execute(
                "DELETE FROM calib_jobs WHERE id IN (SELECT id FROM calib_jobs ORDER BY id "
                "FOR UPDATE SKIP LOCKED LIMIT %s) RETURNING id",
                (CLAIM_BATCH,),
            ).fetchall()
            conn.commit()
            if not rows:
                break
            done += len(rows)
        finished = time.perf_counter()
        conn.execute("DROP TABLE calib_jobs")
        conn.commit()
    total = finished - started
    return {
        "source": "shared.bench.calibration",
        "jobs": done,
        "insert_seconds": round(inserted - started, 4),
        "claim_seconds": round(finished - inserted, 4),
        "seconds": round(total, 4),
        "jobs_per_second": round(done / total, 1) if total else None,
    }


def raw_ceiling(url: str, jobs: int) -> dict[str, Any]:
    """Jobs per second of the raw SQL ceiling for `jobs` no-op jobs (pgqueue's measurement if present)."""
    try:
        mod = importlib.import_module("shared.pgqueue.calibrate")
        fn = getattr(mod, "raw_ceiling", None)
    except ImportError:
        fn = None
    if fn is not None:
        try:
            result = fn(url, jobs)
            if isinstance(result, dict):
                # pgqueue's measurement reports jobs/s per phase; "drain" is the claim-and-complete ceiling.
                rate = result.get("jobs_per_second") or result.get("drain")
                return {"source": "shared.pgqueue.calibrate", **result, "jobs_per_second": rate}
            return {"source": "shared.pgqueue.calibrate", "jobs": jobs, "jobs_per_second": float(result)}
        except Exception:  # noqa: BLE001 - fall back to our own measurement
            pass
    return _own_ceiling(url, jobs)
