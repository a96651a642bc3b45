"""Where pgqueue's bulk enqueue spends its time against a plain COPY (docs/benchmarks.md, "pgqueue").

    .venv/bin/python scripts/pgqueue_enqueue_cost.py --jobs 100000 --rounds 3

On `DATABASE_URL` (migrated), per round and in this order, each on an emptied table, jobs/s of:
1. `raw`: the calibration's plain COPY of pre-encoded rows into its bare table (`calibration.raw_copy`);
2. `table`: the same pre-encoded rows COPYed into `queue.pgqueue_jobs` (its indexes, its defaults), no
   Python per job;
3. `enqueue_many`: `pgqueue.enqueue_many` of as many `JobSpec`s (validation and encoding in Python while
   the COPY streams, and the NOTIFY).
`table / raw` is what the jobs table costs the server; `enqueue_many / table` what the client adds.
"""

from __future__ import annotations

import argparse
import sys
import time

import psycopg

from shared import db, pgqueue, settings
from shared.bench import calibration, stats

QUEUE = "enqueuecost"


def _empty(conn: psycopg.Connection) -> None:
    conn.execute("DELETE FROM queue.pgqueue_jobs WHERE queue = %s", (QUEUE,))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--jobs", type=int, default=100_000)
    p.add_argument("--rounds", type=int, default=3)
    args = p.parse_args()
    url = settings.load().queue_database_url
    meta = '{"run_id":0,"seq":%d,"enqueued_at":1}'
    rows = "".join(f"{QUEUE}\tnoop\t{{}}\t{meta % i}\n" for i in range(args.jobs))
    rates: dict[str, list[float]] = {"raw": [], "table": [], "enqueue_many": []}
    with db.connect(url, autocommit=True) as conn:
        for _ in range(args.rounds):
            rates["raw"].append(calibration.raw_copy(url, args.jobs))
            _empty(conn)
            conn.execute("VACUUM queue.pgqueue_jobs")
            started = time.perf_counter()
            with (
                conn.transaction(),
                conn.cursor().copy("COPY queue.pgqueue_jobs (queue, task, params, meta) FROM STDIN") as copy,
            ):
                copy.write(rows)
            rates["table"].append(args.jobs / (time.perf_counter() - started))
            _empty(conn)
            conn.execute("VACUUM queue.pgqueue_jobs")
            specs = [
                pgqueue.JobSpec("noop", {}, queue=QUEUE, meta={"run_id": 0, "seq": i, "enqueued_at": 1})
                for i in range(args.jobs)
            ]
            started = time.perf_counter()
            pgqueue.enqueue_many(conn, specs)
            rates["enqueue_many"].append(args.jobs / (time.perf_counter() - started))
            _empty(conn)
    med = {k: stats.median(v) or 0.0 for k, v in rates.items()}
    for k, v in rates.items():
        print(f"{k}: median {med[k]:,.0f} jobs/s ({', '.join(f'{x:,.0f}' for x in v)})")
    print(
        f"table / raw {med['table'] / med['raw']:.2f}; enqueue_many / table {med['enqueue_many'] / med['table']:.2f};"
        f" enqueue_many / raw {med['enqueue_many'] / med['raw']:.2f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
