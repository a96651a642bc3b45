"""`make db-up` / `make db-down`: the embedded PostgreSQL, found by the settings when DATABASE_URL is unset."""

from __future__ import annotations

import os
import subprocess

from shared import embedded, settings

from ..support import ROOT, VENV_BIN


def run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(args, env=env, cwd=ROOT, capture_output=True, text=True, timeout=120)


def test_db_up_is_found_by_the_settings_and_db_down_stops_it(tmp_path):
    closed = f"127.0.0.1:{embedded.free_port()}"
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "QUEUE_DATABASE_URL"}}
    env.update(BENCH_DATA_DIR=str(tmp_path), LOCAL_PG_ADDR=closed, PATH=f"{VENV_BIN}:{env['PATH']}")
    python = str(VENV_BIN / "python")
    up = run(["make", "-s", "db-up"], env)
    try:
        assert up.returncode == 0, up.stderr
        url = (tmp_path / "embedded-pg.url").read_text().strip()
        found = run([python, "-c", "from shared import settings; print(settings.load().database_url)"], env)
        assert found.stdout.strip() == url
        version = run(
            [
                python,
                "-c",
                "from shared import db, settings\n"
                "with db.connect(settings.load().database_url) as c: print(c.execute('show server_version').fetchone()[0])",
            ],
            env,
        )
        assert version.stdout.startswith("16"), version.stderr
        assert run(["make", "-s", "migrate"], env).returncode == 0
    finally:
        down = run(["make", "-s", "db-down"], env)
    assert down.returncode == 0, down.stderr
    assert not (tmp_path / "embedded-pg.url").exists()
    gone = run([python, "-m", "shared.migrate"], env)
    assert gone.returncode == 2 and "make db-up" in gone.stderr and "Traceback" not in gone.stderr
    assert not settings._port_answers(url.split("@", 1)[1].split("/", 1)[0])
