"""A TCP proxy that a test can take down and bring back, to stand in for a server outage
without stopping the real server (the shared PostgreSQL, say).

`down()` acts as the server dying: every proxied connection is closed at once (as the kernel
does when the server's process dies) and new connections are refused, or, with `silent=True`,
accepted and never answered (a host gone from the network). `up()` listens again on the same
port.

An asyncio loop in one daemon thread; the test thread talks to it through
`run_coroutine_threadsafe`. Considered: Toxiproxy (toxiproxy-python is only its client and
needs the Go server binary, which the project's machines do not install) and pproxy (tunnels,
but has no way to cut the connections it holds); asyncio streams do it in a page.
"""

from __future__ import annotations

import asyncio
import socket
import threading
from dataclasses import dataclass, field


@dataclass(eq=False)  # kept in a set by identity
class _Link:
    """One client connection and its upstream twin."""

    client: asyncio.StreamWriter
    upstream: asyncio.StreamWriter | None = None
    tasks: list[asyncio.Task] = field(default_factory=list)

    def abort(self) -> None:
        for task in self.tasks:
            task.cancel()
        for writer in (self.client, self.upstream):
            if writer is not None:
                writer.transport.abort()


class TcpProxy:
    def __init__(self, upstream_host: str, upstream_port: int, *, host: str = "127.0.0.1", port: int = 0) -> None:
        self.upstream = (upstream_host, upstream_port)
        self.host = host
        self.port = port
        self.accepted = 0  # connections forwarded to the upstream, ever
        self.cut = 0  # connections cut by down(), ever
        self.held = 0  # connections accepted and never answered while silently down, ever
        self._links: set[_Link] = set()
        self._silent: set[asyncio.StreamWriter] = set()
        self._server: asyncio.base_events.Server | None = None
        self._is_silent = False
        self._outages = 0  # a connection being opened across a down() is cut as well
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name=f"tcp-proxy-{upstream_port}", daemon=True)

    # --- the test's side -----------------------------------------------------------------------

    def start(self) -> "TcpProxy":
        self._thread.start()
        self._call(self._listen())
        return self

    @property
    def address(self) -> tuple[str, int]:
        return self.host, self.port

    @property
    def is_up(self) -> bool:
        return self._server is not None and not self._is_silent

    def down(self, *, silent: bool = False) -> int:
        """Cut every connection; refuse new ones (or, silent, swallow them). Returns how many were cut."""
        return self._call(self._down(silent))

    def up(self) -> None:
        """Forward again. Connections swallowed while silently down stay silent until closed."""
        self._call(self._up())

    def close(self) -> None:
        if not self._thread.is_alive():
            return
        self._call(self._down(silent=False))
        self._call(self._drop_silent())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self._loop.close()

    def __enter__(self) -> "TcpProxy":
        return self.start()

    def __exit__(self, *_exc) -> None:
        self.close()

    def _call(self, coroutine):
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(10)

    # --- the loop's side -----------------------------------------------------------------------

    async def _listen(self) -> None:
        # SO_REUSEADDR: the port comes back at once although cut connections sit in TIME_WAIT.
        self._server = await asyncio.start_server(self._serve, self.host, self.port, reuse_address=True)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _down(self, silent: bool) -> int:
        self._outages += 1
        self._is_silent = silent
        if not silent and self._server is not None:
            self._server.close()  # the port refuses connections from now on
            self._server = None
        links, self._links = self._links, set()
        for link in links:
            link.abort()
        self.cut += len(links)
        return len(links)

    async def _up(self) -> None:
        self._is_silent = False
        if self._server is None:
            await self._listen()

    async def _drop_silent(self) -> None:
        for writer in self._silent:
            writer.transport.abort()
        self._silent.clear()

    async def _serve(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        if self._is_silent:
            self.held += 1
            self._silent.add(client_writer)
            return
        if self._server is None:  # accepted just before down(), served just after: too late
            client_writer.transport.abort()
            return
        link = _Link(client=client_writer)
        outages = self._outages
        try:
            upstream_reader, link.upstream = await asyncio.open_connection(*self.upstream)
        except OSError:
            client_writer.transport.abort()
            return
        if outages != self._outages:
            link.abort()
            return
        link.upstream.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        client_writer.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.accepted += 1
        self._links.add(link)
        link.tasks = [asyncio.create_task(_pipe(client_reader, link.upstream)), asyncio.create_task(_pipe(upstream_reader, client_writer))]
        await asyncio.gather(*link.tasks, return_exceptions=True)
        self._links.discard(link)
        link.abort()


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while chunk := await reader.read(65536):
            writer.write(chunk)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()  # a half-close travels on; the other direction may still talk
    except (ConnectionError, OSError):
        writer.transport.abort()
