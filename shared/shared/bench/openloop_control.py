"""What the open-loop sender's processes share (`shared.bench.openloop`): where a run stops, whether a
sender fell behind, and how far each process got, in a small file each process maps, under an exclusive
`flock` of it, so that the arrivals sent are always a prefix of the schedule."""

from __future__ import annotations

import contextlib
import fcntl
import math
import mmap
import os
import struct
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Control:
    """What the sender processes share, in a small file each maps (`path`), under an exclusive `flock` of it:
    where the run stops (`stop_due`: no arrival due later is sent; infinite until the run stops), whether a
    sender fell behind, and the due time of the last arrival each process sent. Admitting an arrival and
    stopping the run are done under the lock, so that the arrivals sent are a prefix of the schedule.

    A file rather than multiprocessing's shared memory and locks: those need multiprocessing's own helper
    process, which outlives the run; the file is removed with it (`remove`)."""

    path: str
    processes: int
    max_lag: float | None
    _fd: int | None = field(default=None, init=False, repr=False, compare=False)
    _map: mmap.mmap | None = field(default=None, init=False, repr=False, compare=False)

    _STOP, _BEHIND, _LAST = 0, 8, 16

    @classmethod
    def new(cls, processes: int, max_lag: float | None) -> Control:
        fd, path = tempfile.mkstemp(prefix="bench-openloop-")
        with os.fdopen(fd, "wb") as f:
            f.write(struct.pack(f"<dd{processes}d", math.inf, 0.0, *([-math.inf] * processes)))
        return cls(path, processes, max_lag)

    def __getstate__(self) -> dict[str, Any]:
        return {"path": self.path, "processes": self.processes, "max_lag": self.max_lag}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(**state)  # type: ignore[misc]

    def _mapped(self) -> mmap.mmap:
        if self._map is None:
            self._fd = os.open(self.path, os.O_RDWR)
            self._map = mmap.mmap(self._fd, 16 + 8 * self.processes)
        return self._map

    @contextlib.contextmanager
    def _locked(self) -> Iterator[mmap.mmap]:
        m = self._mapped()
        assert self._fd is not None
        fcntl.flock(self._fd, fcntl.LOCK_EX)
        try:
            yield m
        finally:
            fcntl.flock(self._fd, fcntl.LOCK_UN)

    def _get(self, m: mmap.mmap, offset: int) -> float:
        return float(struct.unpack_from("<d", m, offset)[0])

    def admit(self, index: int, due: float, lag: float) -> bool:
        """Whether process `index` sends its arrival due at `due`, `lag` seconds late. The first arrival
        more than `max_lag` late stops the run where the furthest process got to."""
        with self._locked() as m:
            if self.max_lag is not None and lag > self.max_lag and math.isinf(self._get(m, self._STOP)):
                struct.pack_into("<d", m, self._BEHIND, 1.0)
                self._stop_here(m)
            if due > self._get(m, self._STOP):
                return False
            struct.pack_into("<d", m, self._LAST + 8 * index, due)
            return True

    def stop(self) -> None:
        """Stop the run: each process sends what is due up to the latest arrival already sent."""
        with self._locked() as m:
            if math.isinf(self._get(m, self._STOP)):
                self._stop_here(m)

    def _stop_here(self, m: mmap.mmap) -> None:
        last = struct.unpack_from(f"<{self.processes}d", m, self._LAST)
        struct.pack_into("<d", m, self._STOP, max(*last, -1e300))

    @property
    def stop_due(self) -> float:
        return self._get(self._mapped(), self._STOP)

    @property
    def behind(self) -> bool:
        return self._get(self._mapped(), self._BEHIND) > 0

    def stopping_before(self, due: float) -> bool:
        """The run stops before `due` (read without the lock: a hint for a waiting process)."""
        return due > self.stop_due

    def close(self) -> None:
        if self._map is not None:
            self._map.close()
            self._map = None
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def remove(self) -> None:
        """Close it and remove its file (the harness, once every process ended)."""
        self.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)
