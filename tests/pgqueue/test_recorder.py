"""The worker's fast spool recorder writes exactly what the foundation's recorder writes."""

from __future__ import annotations

import time

import pytest
from pgqueue_worker.recorder import FastSpoolRecorder
from shared.contract import Ctx, Meta

from shared import spool


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
def test_lines_are_identical(tmp_path, meta, ctx, error):
    slow = spool.SpoolRecorder(tmp_path / "slow.spool", "w-1", "pgqueue")
    fast = FastSpoolRecorder(tmp_path / "fast.spool", "w-1", "pgqueue")
    ts = time.time()
    for kind in ("start", "finish", "fail"):
        slow.record(kind, meta, ctx, ts, error)
        fast.record(kind, meta, ctx, ts, error)
    slow.close()
    fast.close()
    assert (tmp_path / "fast.spool").read_bytes() == (tmp_path / "slow.spool").read_bytes()
