"""The recorder's fast path writes exactly the lines its general path writes (COPY text format)."""

from __future__ import annotations

import time

import pytest
from shared.contract import Ctx, Meta

from shared import spool


def general_line(kind, meta, ctx, ts, error, worker_id="w-1", adapter="pgqueue"):
    fields = (
        kind,
        meta.run_id,
        meta.seq,
        ctx.attempt,
        ctx.worker_id or worker_id,
        adapter,
        None,
        meta.enqueued_at,
        meta.scheduled_at,
        error,
    )
    out = [spool._field(f) for f in fields]
    out[6] = repr(ts)
    return "\t".join(out) + "\n"


@pytest.mark.parametrize(
    ("meta", "ctx", "error"),
    [
        (Meta(run_id=1, seq=2, enqueued_at=time.time()), Ctx("pgqueue", attempt=1, worker_id="w-1"), None),
        (Meta(run_id=1, seq=None, scheduled_at=1.5), Ctx("pgqueue", attempt=3, worker_id=""), None),
        (Meta(run_id=7, seq=8), Ctx("pgqueue", attempt=1, worker_id="other\tid"), None),
        (
            Meta(run_id=7, seq=8),
            Ctx("pgqueue", attempt=2, worker_id="w-1"),
            "Boom: tab\there\nnew line \\ back",
        ),
    ],
)
def test_fast_and_general_paths_write_the_same_line(tmp_path, meta, ctx, error):
    rec = spool.SpoolRecorder(tmp_path / "w.spool", "w-1", "pgqueue")
    ts = time.time()
    expected = ""
    for kind in ("start", "finish", "fail"):
        rec.record(kind, meta, ctx, ts, error)
        expected += general_line(kind, meta, ctx, ts, error)
    if error is None:
        # contract.execute's path: the shared fields formatted once for a job's start and finish
        parts = rec.job_parts(meta, ctx)
        for kind in ("start", "finish"):
            rec.record_job(kind, parts, ts)
            expected += general_line(kind, meta, ctx, ts, None)
    rec.close()
    assert (tmp_path / "w.spool").read_text() == expected
