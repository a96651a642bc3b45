"""The correctness audit of one run, keyed by `(run_id, seq)` (docs/benchmark.md, "The audit").

From the start, finish and fail records of a run and the set of `seq` the harness enqueued:

- *enqueued*: how many jobs the harness handed to the queue;
- *executed*: jobs with at least one start record ("ran at least once");
- *completed*: jobs with a finish record;
- *duplicates*: executions that no recorded failure caused: a start that comes after the job had
  already finished (a second successful-path execution); counted per execution and per job;
- *redelivered*: starts after an attempt that left neither finish nor fail (its process died): the
  queue gave the job again after a crash, which is correct, and is reported apart;
- *retried*: starts after a recorded failure (the retry policy at work);
- *lost*: enqueued jobs with no finish record when the run ends;
- *unexpected*: records for a `seq` the harness never enqueued.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field

import psycopg

from shared.bench import records
from shared.bench.records import Record


@dataclass
class Audit:
    """The audit figures of one run; `lost_seqs` and `duplicate_seqs` list (up to 100) offenders."""

    enqueued: int = 0
    executed: int = 0
    completed: int = 0
    duplicates: int = 0
    duplicate_jobs: int = 0
    redelivered: int = 0
    retried: int = 0
    failed_attempts: int = 0
    lost: int = 0
    unexpected: int = 0
    lost_seqs: list[int] = field(default_factory=list)
    duplicate_seqs: list[int] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when every enqueued job finished and none ran twice without a cause."""
        return self.lost == 0 and self.duplicates == 0 and self.unexpected == 0

    def to_dict(self) -> dict[str, object]:
        return {**asdict(self), "ok": self.ok}


def audit(enqueued: Iterable[int], events: Iterable[Record]) -> Audit:
    """Audit one run from the `seq`s enqueued and the events recorded (in any order)."""
    expected = set(enqueued)
    by_seq: dict[int, list[Record]] = defaultdict(list)
    for e in events:
        by_seq[e.seq].append(e)
    a = Audit(enqueued=len(expected))
    dup_seqs: list[int] = []
    for seq, evs in by_seq.items():
        if seq not in expected:
            a.unexpected += 1
            continue
        # Order by time; at equal times a start precedes its own end.
        evs.sort(key=lambda e: (e.ts, 0 if e.kind == "start" else 1))
        starts = [e for e in evs if e.kind == "start"]
        finishes = [e for e in evs if e.kind == "finish"]
        fails = [e for e in evs if e.kind == "fail"]
        a.failed_attempts += len(fails)
        if starts or finishes:
            a.executed += 1
        if finishes:
            a.completed += 1
        # Walk the starts; what ended the previous execution decides what the next start is.
        previous_end: str | None = None  # "finish", "fail", "none" (crashed) or None (first)
        dup_here = 0
        for i, start in enumerate(starts):
            if i > 0:
                if previous_end == "finish":
                    dup_here += 1
                elif previous_end == "fail":
                    a.retried += 1
                else:
                    a.redelivered += 1
            nxt = starts[i + 1].ts if i + 1 < len(starts) else float("inf")
            ends = [e for e in evs if e.kind != "start" and start.ts <= e.ts <= nxt]
            own = [e for e in ends if e.worker_id == start.worker_id] or ends
            if any(e.kind == "finish" for e in own):
                previous_end = "finish"
            elif own:
                previous_end = "fail"
            elif previous_end != "finish":
                previous_end = "none"
        # A finish recorded twice with fewer starts (e.g. a start record torn off) is still two runs.
        dup_here = max(dup_here, len(finishes) - 1)
        if dup_here:
            a.duplicates += dup_here
            a.duplicate_jobs += 1
            dup_seqs.append(seq)
    lost = sorted(s for s in expected if not any(e.kind == "finish" for e in by_seq.get(s, ())))
    a.lost = len(lost)
    a.lost_seqs = lost[:100]
    a.duplicate_seqs = sorted(dup_seqs)[:100]
    return a


def audit_run(conn: psycopg.Connection, run_id: int, enqueued: Iterable[int]) -> Audit:
    """Audit run `run_id` from the database."""
    return audit(enqueued, records.of_run(conn, run_id))
