"""The LISTEN thread: wakes the fetcher when a job arrives in one of its queues.

A notification is a hint, never the only path (the fetcher also polls). The payload `RECHECK` (sent by
cancel, discard and pause) asks the process to re-check the jobs it claimed and has not started. The
listener reconnects with backoff when the connection breaks, and on every (re)connect reports all queues
as woken and asks for a re-check, since notifications sent while it was away are lost.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable

import psycopg

from shared import db
from shared.pgqueue import CHANNEL, RECHECK

log = logging.getLogger(__name__)


class Listener(threading.Thread):
    def __init__(
        self,
        database_url: str,
        queues: Iterable[str],
        on_wake: Callable[[str | None], None],
        on_recheck: Callable[[], None],
    ) -> None:
        super().__init__(name="listener", daemon=True)
        self.database_url = database_url
        self.queues = frozenset(queues)
        self.on_wake = on_wake
        self.on_recheck = on_recheck
        self._stop_event = threading.Event()
        self._conn: psycopg.Connection | None = None
        self.connected = threading.Event()
        self.reconnects = 0

    def run(self) -> None:
        backoff = 0.05
        while not self._stop_event.is_set():
            try:
                self._conn = db.connect(self.database_url, role="pgqueue-listener", autocommit=True)
                self._conn.execute(f"LISTEN {CHANNEL}")
                self.connected.set()
                self.on_recheck()  # anything sent while we were not listening
                self.on_wake(None)
                backoff = 0.05
                while not self._stop_event.is_set():
                    for note in self._conn.notifies(timeout=0.5):
                        if note.payload in self.queues:
                            self.on_wake(note.payload)
                        elif note.payload == RECHECK:
                            self.on_recheck()
            except psycopg.Error as exc:
                self.connected.clear()
                if self._stop_event.is_set():
                    break
                self.reconnects += 1
                first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                log.warning("listener lost its connection, reconnecting in %.2fs: %s", backoff, first)
                self._stop_event.wait(backoff)
                backoff = min(backoff * 2, 2.0)
            finally:
                if self._conn is not None:
                    try:
                        self._conn.close()
                    except psycopg.Error:
                        pass
                    self._conn = None

    def stop(self) -> None:
        self._stop_event.set()
        if self.is_alive():
            self.join(2.0)
