"""The recorder's lines: COPY text format, times in integer microseconds, one path for every line."""

from __future__ import annotations

import time

import pytest

from shared import spool
from shared.contract import Ctx, Meta


def expected_line(kind, meta, ctx, ts_us, error=None, worker_id="w-1", adapter="pgqueue"):
    """The line as the table's columns define it, field by field."""
    m = meta.to_dict() if isinstance(meta, Meta) else meta

    def us(v):
        return None if v is None or kind != "start" else round(v * 1e6)

    fields = (
        kind,
        m["run_id"],
        m["seq"],
        ctx.attempt,
        ctx.worker_id or worker_id,
        adapter,
        ts_us,
        us(m.get("enqueued_at")),
        us(m.get("scheduled_at")),
        error,
    )
    return "\t".join(spool._field(f) for f in fields) + "\n"


CASES = [
    (Meta(run_id=1, seq=2, enqueued_at=time.time()), Ctx("pgqueue", attempt=1, worker_id="w-1")),
    (
        {"run_id": 1, "seq": 0, "scheduled_at": 1.5, "enqueued_at": 1.25},
        Ctx("pgqueue", attempt=3, worker_id=""),
    ),
    (Meta(run_id=7, seq=8), Ctx("pgqueue", attempt=1, worker_id="other\tid")),
]


@pytest.mark.parametrize(("meta", "ctx"), CASES)
def test_start_finish_and_record_write_the_columns_in_order(tmp_path, meta, ctx):
    rec = spool.SpoolRecorder(tmp_path / "w.spool", "w-1", "pgqueue")
    m = meta.to_dict() if isinstance(meta, Meta) else meta
    before = time.time_ns() // 1000
    head = rec.start(m, ctx)
    rec.finish(head)
    after = time.time_ns() // 1000
    ts = 1_700_000_000.123456
    error = "Boom: tab\there\nnew line \\ back"
    rec.record("start", meta, ctx, ts)
    rec.record("fail", meta, ctx, ts, error)
    rec.close()
    lines = (tmp_path / "w.spool").read_text().splitlines(keepends=True)
    start_us, finish_us = (int(spool.parse_line(line)["ts_us"]) for line in lines[:2])
    assert before <= start_us <= finish_us <= after
    assert lines == [
        expected_line("start", meta, ctx, start_us),
        expected_line("finish", meta, ctx, finish_us),
        expected_line("start", meta, ctx, 1_700_000_000_123_456),
        expected_line("fail", meta, ctx, 1_700_000_000_123_456, error),
    ]
    # the error's tab, newline and backslash are escaped: one line, ten fields, read back as written
    assert spool.parse_line(lines[3])["error"] == "Boom: tab\\there\\nnew line \\\\ back"


@pytest.mark.parametrize(
    ("meta", "ok"),
    [
        ({"run_id": 1, "seq": 1}, True),
        (Meta(run_id=1, seq=0), True),
        ({"run_id": 1}, False),  # no audit key: seq is NOT NULL in job_events
        ({"seq": 1}, False),
        ({}, False),
        (None, False),
        (Meta(run_id=1), False),
    ],
)
def test_only_a_meta_with_the_audit_key_is_recorded(meta, ok):
    assert spool.recordable(meta) is ok


@pytest.mark.parametrize(
    "meta",
    [
        {"run_id": "x", "seq": 1},
        {"run_id": 1, "seq": 1 << 63},
        {"run_id": 1, "seq": 1, "enqueued_at": "soon"},
        {"run_id": 1, "seq": 1, "enqueued_at": float("nan")},
        {"run_id": 1, "seq": 1, "scheduled_at": 1e300},
    ],
)
def test_a_malformed_meta_raises_before_a_line_is_written(tmp_path, meta):
    # A line the database refused would stop the loader at that file, so nothing malformed is written.
    rec = spool.SpoolRecorder(tmp_path / "w.spool", "w-1", "pgqueue")
    with pytest.raises(ValueError, match="meta|invalid literal|could not convert"):
        rec.start(meta, Ctx("pgqueue", worker_id="w-1"))
    rec.close()
    assert (tmp_path / "w.spool").read_text() == ""


def test_parse_line_rejects_what_is_not_a_record():
    assert spool.parse_line("start\t1\t2") is None
    f = spool.parse_line("finish\t1\t2\t1\tw\tpgqueue\t5\t\\N\t\\N\t\\N\n")
    assert f["kind"] == "finish" and f["ts_us"] == "5" and f["enqueued_us"] is None


def test_the_loader_copies_the_fields_of_a_line_in_their_order():
    """A line's fields are COPY's columns: `spool_copy` (sql/spool.sql) names them as `COLUMNS` orders them."""
    copy = spool.QUERIES["spool_copy"]
    named = copy[copy.index("(") + 1 : copy.index(")")]
    assert tuple(c.strip() for c in named.split(",")) == spool.COLUMNS
