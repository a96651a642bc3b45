"""The embedded PostgreSQL: a cluster from the `pgserver` pip package, data under the project.

`make db-up` / `make db-down` call `python -m shared.embedded up|down`. The cluster listens on
127.0.0.1 on a free port and on a socket in its data folder; its URL is written to
`settings.EMBEDDED_URL_FILE`, where the settings find it. The test suite and `make bench` start
clusters of their own with `EmbeddedCluster(path).start()`.

pgserver ships PostgreSQL's binaries; we drive `initdb` and `pg_ctl` ourselves so that the cluster
listens on TCP (pgserver's own wrapper only opens a socket) and so that it can be stopped and
restarted (the PostgreSQL-restart fault). As root, PostgreSQL runs as the system user `pgserver`.
"""

from __future__ import annotations

import argparse
import os
import pwd
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from shared import settings

# Settings for a benchmark box: enough connections for every worker slot and the harness,
# durability left at PostgreSQL's defaults (synchronous_commit on), which the report records.
SERVER_OPTIONS = {
    "max_connections": "300",
    "shared_buffers": "256MB",
    "listen_addresses": "127.0.0.1",
    "fsync": "on",
    "synchronous_commit": "on",
    "max_wal_size": "2GB",
    "log_min_messages": "warning",
    "track_io_timing": "off",
}


def _bin(name: str) -> Path:
    import warnings

    with warnings.catch_warnings():  # platformdirs warns when XDG_RUNTIME_DIR is unset
        warnings.simplefilter("ignore")
        import pgserver  # imported late: a dev dependency, absent from service images

    return Path(pgserver.__file__).parent / "pginstall" / "bin" / name


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class EmbeddedCluster:
    """One PostgreSQL cluster whose data lives in `path`."""

    path: Path
    port: int | None = None

    @property
    def pgdata(self) -> Path:
        return self.path / "pgdata"

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run_as(self) -> dict:
        if os.geteuid() != 0:
            return {}
        import warnings

        with warnings.catch_warnings():  # platformdirs warns when XDG_RUNTIME_DIR is unset
            warnings.simplefilter("ignore")
            from pgserver.utils import ensure_prefix_permissions, ensure_user_exists

        ensure_user_exists("pgserver")
        ensure_prefix_permissions(self.path)
        ensure_prefix_permissions(_bin("postgres"))
        entry = pwd.getpwnam("pgserver")
        for p in (self.path, *self.path.rglob("*")) if self.path.exists() else ():
            try:
                os.chown(p, entry.pw_uid, entry.pw_gid)
            except FileNotFoundError:
                pass
        return {"user": "pgserver"}

    def _pg_ctl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return subprocess.run(
            [str(_bin("pg_ctl")), "-D", str(self.pgdata), *args],
            check=check,
            capture_output=True,
            text=True,
            stdin=subprocess.DEVNULL,
            **self._run_as(),
        )

    def running_pid(self) -> int | None:
        """The postmaster's PID if this cluster runs, else None."""
        pidfile = self.pgdata / "postmaster.pid"
        try:
            lines = pidfile.read_text().splitlines()
        except OSError:
            return None
        try:
            pid, port = int(lines[0]), int(lines[3])
        except (IndexError, ValueError):
            return None
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        self.port = port
        return pid

    def start(self) -> EmbeddedCluster:
        """Initialise the cluster if needed and start it (a no-op when it already runs)."""
        self.path.mkdir(parents=True, exist_ok=True)
        if self.running_pid():
            return self
        run_as = self._run_as()
        if not (self.pgdata / "PG_VERSION").exists():
            self.pgdata.mkdir(parents=True, exist_ok=True)
            self._run_as()
            subprocess.run(
                [
                    str(_bin("initdb")),
                    "-D",
                    str(self.pgdata),
                    "--auth=trust",
                    "-U",
                    "postgres",
                    "--encoding=UTF8",
                    "--no-instructions",
                ],
                check=True,
                capture_output=True,
                text=True,
                stdin=subprocess.DEVNULL,
                **run_as,
            )
        self.port = self.port or free_port()
        options = " ".join(f"-c {k}={v}" for k, v in SERVER_OPTIONS.items())
        result = self._pg_ctl(
            "-w",
            "-t",
            "60",
            "-l",
            str(self.path / "server.log"),
            "-o",
            f"-p {self.port} -k {self.pgdata} {options}",
            "start",
            check=False,
        )
        if result.returncode != 0:
            log = (
                (self.path / "server.log").read_text()[-2000:] if (self.path / "server.log").exists() else ""
            )
            raise RuntimeError(
                f"embedded PostgreSQL at {self.path} did not start: {result.stderr.strip()}\n{log}"
            )
        return self

    def stop(self, mode: str = "fast") -> None:
        """Stop the cluster if it runs (`mode`: smart, fast or immediate)."""
        if self.running_pid():
            self._pg_ctl("-w", "-t", "60", "-m", mode, "stop", check=False)

    def restart(self) -> None:
        """Stop and start again on the same port (the PostgreSQL-restart fault)."""
        port = self.port
        self.stop("fast")
        self.port = port
        self.start()

    def destroy(self) -> None:
        """Stop the cluster and delete its data."""
        self.stop("immediate")
        shutil.rmtree(self.path, ignore_errors=True)


def project_cluster() -> EmbeddedCluster:
    """The cluster of `make db-up`, under the project's ignored data folder."""
    return EmbeddedCluster(settings.DATA_DIR / "embedded-pg")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m shared.embedded", description=__doc__.split("\n")[0])
    parser.add_argument("action", choices=["up", "down", "url", "status"])
    args = parser.parse_args(argv)
    cluster = project_cluster()
    if args.action == "up":
        started = time.monotonic()
        cluster.start()
        settings.EMBEDDED_URL_FILE.parent.mkdir(parents=True, exist_ok=True)
        settings.EMBEDDED_URL_FILE.write_text(cluster.url + "\n")
        print(
            f"embedded PostgreSQL running at {cluster.url} (data in {cluster.path}, {time.monotonic() - started:.1f} s)"
        )
    elif args.action == "down":
        cluster.stop()
        settings.EMBEDDED_URL_FILE.unlink(missing_ok=True)
        print("embedded PostgreSQL stopped")
    elif args.action == "url":
        if not cluster.running_pid():
            print("embedded PostgreSQL is not running; run `make db-up`", file=sys.stderr)
            return 1
        print(cluster.url)
    else:
        pid = cluster.running_pid()
        print(f"running, pid {pid}, {cluster.url}" if pid else "stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
