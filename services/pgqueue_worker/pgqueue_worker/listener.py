"""The LISTEN thread: wakes the fetcher when a job arrives in one of its queues.

A notification is a hint, never the only path (the fetcher also polls). The listener reconnects with
backoff when the connection breaks, and on every (re)connect reports all queues as woken, since
notifications sent while it was away are lost.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable

import psycopg

from shared import db
from shared.pgqueue import CHANNEL

log = logging.getLogger(__name__)


class Listener(threading.Thread):
    def __init__(
        self, database_url: str, queues: Iterable[str], on_wake: Callable[[str | None], None]
    ) -> None:
        super().__init__(name="listener", daemon=True)
        self.database_url = database_url
        self.queues = frozenset(queues)
        self.on_wake = on_wake
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
                self.on_wake(None)  # anything sent while we were not listening
                backoff = 0.05
                while not self._stop_event.is_set():
                    for note in self._conn.notifies(timeout=0.5):
                        if note.payload in self.queues:
                            self.on_wake(note.payload)
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
