from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

from shared import contract, db, spool
from shared.contract import Ctx, Meta


def count(url, sql="SELECT count(*) FROM job_events"):
    with db.connect(url) as conn:
        return conn.execute(sql).fetchone()[0]


def test_lines_load_exactly_once(database_url, spool_dir):
    rec = spool.SpoolRecorder(spool.path_for("w1", 11), "w1", "pgqueue")
    for seq in range(1, 101):
        rec.record("start", Meta(run_id=5, seq=seq, enqueued_at=1.0), Ctx("pgqueue", worker_id="w1"), 2.0)
    with db.connect(database_url) as conn:
        assert spool.load_file(conn, rec.path, "w1") == 100
        assert spool.load_file(conn, rec.path, "w1") == 0
        rec.record("finish", Meta(run_id=5, seq=1), Ctx("pgqueue", worker_id="w1"), 3.0)
        assert spool.load_file(conn, rec.path, "w1") == 1
    assert count(database_url) == 101


def test_a_partial_last_line_waits_for_its_end(database_url, spool_dir):
    path = spool_dir / "w2-1.spool"
    path.write_text("start\t1\t1\t1\tw2\tcelery\t1000000\t\\N\t\\N\t\\N\nfinish\t1\t1\t1\tw2\tcel")
    with db.connect(database_url) as conn:
        assert spool.load_file(conn, path, "w2") == 1
        with open(path, "a") as f:
            f.write("ery\t2000000\t\\N\t\\N\t\\N\n")
        assert spool.load_file(conn, path, "w2") == 1
    assert (
        count(database_url, "SELECT string_agg(kind, ',' ORDER BY ts_us) FROM job_events") == "start,finish"
    )


def test_records_survive_sigkill_and_the_loader_picks_up_every_process(database_url, spool_dir):
    # A child process records and is SIGKILLed without any chance to flush; its lines are on disk.
    code = textwrap.dedent(
        """
        import os, signal
        from shared import contract, spool
        from shared.contract import Ctx
        rec = spool.SpoolRecorder(spool.path_for("wk"), "wk", "pgqueue")
        spool.install(rec)
        for seq in range(50):
            contract.execute("noop", {}, {"run_id": 9, "seq": seq}, Ctx("pgqueue", worker_id="wk"))
        os.kill(os.getpid(), signal.SIGKILL)
        """
    )
    proc = subprocess.run([sys.executable, "-c", code], env={**os.environ, "BENCH_SPOOL_DIR": str(spool_dir)})
    assert proc.returncode == -signal.SIGKILL
    loaded = []
    loader = spool.SpoolLoader("wk-", "wk", database_url, interval=0.1, on_loaded=loaded.append)
    loader.start()
    loader.stop()
    assert loader.loaded_lines == 100 and loaded
    assert (
        count(database_url, "SELECT count(DISTINCT seq) FROM job_events WHERE kind = 'finish' AND run_id = 9")
        == 50
    )


def test_execute_db_write_inserts_through_the_app_connection(database_url):
    contract.execute("db_write", {"payload": "hello"}, {}, Ctx("pgqueue", worker_id="w"))
    assert count(database_url, "SELECT payload FROM workload_writes") == "hello"
