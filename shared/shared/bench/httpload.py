"""The HTTP side of `make bench-web`'s open-loop load (`shared.bench.webbench.load`): each sender process of
the open-loop sender (`shared.bench.openloop`) GETs one page on a pool of keep-alive connections from one
event loop, so a request leaves when it is due whether or not earlier ones have answered."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

HTTP_TIMEOUT_SECONDS = 30.0
CONNECTION_SECONDS = 0.05
"""Each sender process opens, before the window, as many keep-alive connections as its share of the rate
keeps busy if answers take this long; an arrival that finds none idle opens another."""
REUSE_SECONDS = 1.5
"""A pooled connection idle longer than this is closed, not reused: gunicorn closes a keep-alive connection
after 2 s without a request (its `keepalive`), and a request written as the server closes it fails with
nothing read. Clients close theirs before the server's timeout for the same reason."""
MAX_CONNECTIONS = 256
"""The most connections one sender process holds (gunicorn serves 1,000 per worker): past them an arrival
waits for one, and that wait is counted in its latency and in how late it left."""


@dataclass(frozen=True)
class HttpOpener:
    """Opens one sender process's keep-alive connections to the web service (`openloop.Opener`)."""

    host: str
    port: int
    path: str
    cookie: str
    connections: int

    def __call__(self) -> HttpSender:
        return HttpSender(self.host, self.port, self.path, self.cookie, self.connections)


class HttpSender:
    """GET requests on a pool of keep-alive connections, from one event loop: a request leaves when it is
    due whether or not earlier ones have answered (`openloop.Sender`, concurrent). Its outcome is (the time
    it was written, the time its answer was read, the HTTP status or the error's name)."""

    def __init__(self, host: str, port: int, path: str, cookie: str, connections: int) -> None:
        self.host, self.port, self.connections = host, port, connections
        self.request = f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nCookie: {cookie}\r\n\r\n".encode(
            "latin-1"
        )
        self.idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter, float]] = []
        """Idle keep-alive connections, each with the time it was last used (monotonic)."""
        self.slots: asyncio.Semaphore | None = None

    async def open(self) -> None:
        self.slots = asyncio.Semaphore(MAX_CONNECTIONS)
        for _ in range(self.connections):
            self.idle.append((*await asyncio.open_connection(self.host, self.port), time.monotonic()))

    async def send(self, seq: int, due: float) -> tuple[float, float, int | str]:
        assert self.slots is not None, "opened before the window"
        async with self.slots:
            return await self._send()

    async def _send(self) -> tuple[float, float, int | str]:
        written = time.time()
        for attempt in (1, 2):
            # A pooled connection may still have been closed by the server as it was written: one retry, on a
            # new connection.
            conn = self._pooled() if attempt == 1 else None
            pooled = conn is not None
            if conn is None:
                conn = await asyncio.open_connection(self.host, self.port)
            written = time.time()
            try:
                async with asyncio.timeout(HTTP_TIMEOUT_SECONDS):
                    status, keep = await _exchange(conn, self.request)
            except (OSError, asyncio.IncompleteReadError, ValueError, TimeoutError) as exc:
                conn[1].close()
                if attempt == 1 and pooled and not isinstance(exc, TimeoutError):
                    continue
                return written, time.time(), type(exc).__name__
            if keep:
                self.idle.append((*conn, time.monotonic()))
            else:
                conn[1].close()
            return written, time.time(), status
        raise AssertionError("unreachable")

    def _pooled(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter] | None:
        """The most recently used idle connection that the server has not timed out yet (older ones closed)."""
        while self.idle:
            reader, writer, used = self.idle.pop()
            if time.monotonic() - used < REUSE_SECONDS:
                return reader, writer
            writer.close()
        return None

    async def close(self) -> None:
        for _, writer, _used in self.idle:
            writer.close()
        self.idle.clear()


async def _exchange(
    conn: tuple[asyncio.StreamReader, asyncio.StreamWriter], request: bytes
) -> tuple[int, bool]:
    """Write one request and read its whole answer (Content-Length or chunked): (status, keep-alive)."""
    reader, writer = conn
    writer.write(request)
    await writer.drain()
    status_line = await reader.readuntil(b"\r\n")
    status = int(status_line.split()[1])
    headers: dict[str, str] = {}
    while (line := await reader.readuntil(b"\r\n")) != b"\r\n":
        name, _, value = line.decode("latin-1").partition(":")
        headers[name.strip().lower()] = value.strip()
    if headers.get("transfer-encoding", "").lower() == "chunked":
        while size := int((await reader.readuntil(b"\r\n")).split(b";")[0], 16):
            await reader.readexactly(size + 2)
        while await reader.readuntil(b"\r\n") != b"\r\n":
            pass
    else:
        await reader.readexactly(int(headers.get("content-length", "0")))
    return status, headers.get("connection", "").lower() != "close"
