"""Every job of a fault run that started twice, with its records' times from the kill (docs/benchmarks.md).

    .venv/bin/python scripts/fault_trace.py postgresql://postgres@127.0.0.1:PORT/postgres

On the database of an experiment (the harness's embedded cluster keeps its data in `.data/bench-pg` until
the next `make bench`): for each fault run, the seqs with more than one start, each record as
`kind:worker:ms from the kill`. A first start without a finish before the kill is a redelivery of the job
the killed process held; a first finish just before the kill followed by a second start is a duplicate, the
job whose outcome the killed process had not yet written (the queue's at-least-once window).
"""

from __future__ import annotations

import sys

import psycopg

RUNS = """
SELECT id, case_key, metrics->'fault' FROM benchmark_runs
 WHERE scenario = 'fault' AND metrics->'fault' ? 'at' ORDER BY id
"""
TWICE = """
SELECT seq, array_agg(kind || ':' || worker_id || ':' || ((ts_us - %(at_us)s) / 1000)::text ORDER BY ts_us)
  FROM job_events WHERE run_id = %(run_id)s
 GROUP BY seq HAVING count(*) FILTER (WHERE kind = 'start') > 1
 ORDER BY seq
"""


def main() -> int:
    if len(sys.argv) != 2:
        print(__doc__.splitlines()[2].strip(), file=sys.stderr)
        return 2
    with psycopg.connect(sys.argv[1]) as conn:
        for run_id, case_key, fault in conn.execute(RUNS).fetchall():
            twice = conn.execute(TWICE, {"at_us": int(fault["at"] * 1e6), "run_id": run_id}).fetchall()
            print(f"{case_key}: killed pid {fault.get('pid')}, {len(twice)} job(s) started twice")
            for seq, records in twice:
                print(f"    seq {seq}: {', '.join(records)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
