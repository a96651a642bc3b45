"""The recorder's memory-mapped appends: whole lines, in order, across windows, threads and reopenings."""

from __future__ import annotations

import threading

import pytest

from shared import spool
from shared.contract import Ctx

CTX = Ctx("pgqueue", worker_id="w-1")


@pytest.fixture
def small_windows(monkeypatch):
    # one page per window, so that a few hundred lines cross many window boundaries
    monkeypatch.setattr(spool, "_WINDOW", 4096)


def test_threads_append_whole_lines_across_many_windows(tmp_path, small_windows):
    rec = spool.SpoolRecorder(tmp_path / "w.spool", "w-1", "pgqueue")
    threads, per_thread = 8, 400

    def work(t):
        for i in range(per_thread):
            rec.finish(rec.start({"run_id": 1, "seq": t * per_thread + i, "enqueued_at": 1.5}, CTX))

    pool = [threading.Thread(target=work, args=(t,)) for t in range(threads)]
    for th in pool:
        th.start()
    for th in pool:
        th.join()
    # while open, the file ends in the mapped window's unwritten NUL bytes; the lines are whole before it
    raw = rec.path.read_bytes()
    assert raw.endswith(b"\0")
    assert b"\0" not in spool.complete_lines(raw)
    rec.close()
    text = rec.path.read_text()  # closing trimmed the NUL tail
    lines = text.splitlines()
    assert len(lines) == 2 * threads * per_thread
    parsed = [spool.parse_line(line) for line in lines]
    assert all(p is not None for p in parsed)
    assert sorted(int(p["seq"]) for p in parsed if p["kind"] == "start") == list(range(threads * per_thread))
    assert sorted(int(p["seq"]) for p in parsed if p["kind"] == "finish") == list(range(threads * per_thread))


def test_a_reopened_file_continues_after_its_last_complete_line(tmp_path, small_windows):
    path = tmp_path / "w.spool"
    rec = spool.SpoolRecorder(path, "w-1", "pgqueue")
    rec.finish(rec.start({"run_id": 1, "seq": 1}, CTX))
    # as a SIGKILL leaves it: not closed, a line half copied, then the window's NUL tail
    good = spool.complete_lines(path.read_bytes())
    with open(path, "r+b") as f:
        f.seek(len(good))
        f.write(b"start\t1\t2\t1\tw-1\tpgq\0\0\0\t\\N\n")
    rec2 = spool.SpoolRecorder(path, "w-1", "pgqueue")
    rec2.finish(rec2.start({"run_id": 1, "seq": 3}, CTX))
    rec2.close()
    kinds = [(p["kind"], p["seq"]) for p in map(spool.parse_line, path.read_text().splitlines())]
    assert kinds == [("start", "1"), ("finish", "1"), ("start", "3"), ("finish", "3")]


def test_a_record_after_close_raises(tmp_path):
    rec = spool.SpoolRecorder(tmp_path / "w.spool", "w-1", "pgqueue")
    rec.close()
    rec.close()  # twice is harmless
    with pytest.raises(ValueError, match="closed"):
        rec.start({"run_id": 1, "seq": 1}, CTX)


def test_a_nul_in_an_error_is_escaped(tmp_path):
    # PostgreSQL's text takes no NUL byte, and readers stop at the first NUL: it is written as `\\0`
    rec = spool.SpoolRecorder(tmp_path / "w.spool", "w-1", "pgqueue")
    rec.record("fail", {"run_id": 1, "seq": 1}, CTX, 1.0, "bad\0byte")
    rec.close()
    assert spool.parse_line(rec.path.read_text())["error"] == "bad\\\\0byte"


@pytest.mark.parametrize(
    ("data", "lines"),
    [
        (b"", b""),
        (b"a\nb", b"a\n"),
        (b"a\nb\n\0\0\0", b"a\nb\n"),
        (b"a\nb\0\0\n", b"a\n"),  # a line whose copy had not reached its start when read
    ],
)
def test_complete_lines(data, lines):
    assert spool.complete_lines(data) == lines
