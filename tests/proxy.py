"""A small loopback TCP proxy for fault injection: pass, delay, drop (hold silently) or cut connections."""

from __future__ import annotations

import asyncio
import contextlib


class FaultProxy:
    """`target_host` and `source` let it stand for another host on loopback: it dials the target from
    `source` (any 127.x address), so the target sees the call come from there."""

    def __init__(self, target_port: int, target_host: str = "127.0.0.1", source: str | None = None) -> None:
        self.target_port = target_port
        self.target_host = target_host
        self.source = source
        self.mode = "pass"  # pass | delay | drop | cut
        self.delay = 0.0
        self.port = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._handlers: set[asyncio.Task[None]] = set()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def start(self) -> FaultProxy:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    def cut(self) -> None:
        """Close every open connection and refuse new ones."""
        self.mode = "cut"
        for writer in list(self._writers):
            writer.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        handler = asyncio.current_task()
        if handler is not None:
            self._handlers.add(handler)
            handler.add_done_callback(self._handlers.discard)
        if self.mode == "cut":
            writer.close()
            return
        self._writers.add(writer)
        try:
            local = (self.source, 0) if self.source else None
            up_reader, up_writer = await asyncio.open_connection(self.target_host, self.target_port, local_addr=local)
        except OSError:
            writer.close()
            return
        self._writers.add(up_writer)
        await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer), return_exceptions=True)
        for w in (writer, up_writer):
            self._writers.discard(w)
            w.close()

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, asyncio.CancelledError):
            while data := await reader.read(65536):
                if self.mode == "drop":
                    continue
                if self.mode == "cut":
                    break
                if self.mode == "delay" and self.delay:
                    await asyncio.sleep(self.delay)
                writer.write(data)
                await writer.drain()
        writer.close()

    async def close(self) -> None:
        self.cut()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        await asyncio.gather(*self._handlers, return_exceptions=True)
