"""bff.http_server: a response's writes in one loop step leave as one send, in order, never held."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest

from bff.http_server import CoalescingTransport


class RecordingTransport(asyncio.Transport):
    """A real socket transport that remembers each write it was asked to make."""

    def __init__(self, real: asyncio.Transport) -> None:
        super().__init__()
        self.real = real
        self.writes: list[bytes] = []

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.writes.append(bytes(data))
        self.real.write(data)

    def close(self) -> None:
        self.real.close()

    def abort(self) -> None:
        self.real.abort()

    def is_closing(self) -> bool:
        return self.real.is_closing()

    def get_write_buffer_size(self) -> int:
        return self.real.get_write_buffer_size()


@dataclass
class Peer:
    """The other end of the socket: every byte it received, and whether it saw the end."""

    received: bytearray = field(default_factory=bytearray)
    got: asyncio.Event = field(default_factory=asyncio.Event)
    ended: asyncio.Event = field(default_factory=asyncio.Event)

    async def wait_for(self, size: int) -> bytes:
        while len(self.received) < size:
            self.got.clear()
            await self.got.wait()
        return bytes(self.received)


@dataclass
class Wired:
    peer: Peer
    recorder: RecordingTransport
    transport: CoalescingTransport


@pytest.fixture
async def wired() -> AsyncIterator[Wired]:
    peer = Peer()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while chunk := await reader.read(65536):
            peer.received += chunk
            peer.got.set()
        writer.close()
        await writer.wait_closed()
        peer.ended.set()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    loop = asyncio.get_running_loop()
    real, _ = await loop.create_connection(asyncio.Protocol, "127.0.0.1", port)
    recorder = RecordingTransport(real)
    try:
        yield Wired(peer, recorder, CoalescingTransport(recorder, loop))
    finally:
        real.close()
        await peer.ended.wait()
        server.close()
        await server.wait_closed()


async def test_a_head_and_body_written_in_one_step_leave_as_one_send(wired: Wired) -> None:
    head = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n"
    wired.transport.write(head)
    wired.transport.write(b"{}")
    assert wired.recorder.writes == []  # nothing sent yet: the step is not over

    assert await wired.peer.wait_for(len(head) + 2) == head + b"{}"
    assert wired.recorder.writes == [head + b"{}"]


async def test_writes_in_later_steps_are_sent_without_waiting_for_more(wired: Wired) -> None:
    wired.transport.write(b"first")
    assert await wired.peer.wait_for(5) == b"first"
    wired.transport.write(b"second")
    assert await wired.peer.wait_for(11) == b"firstsecond"
    assert wired.recorder.writes == [b"first", b"second"]


async def test_close_sends_what_is_pending_before_the_end(wired: Wired) -> None:
    wired.transport.write(b"last words")
    wired.transport.close()
    await wired.peer.ended.wait()
    assert bytes(wired.peer.received) == b"last words"


async def test_abort_drops_what_is_pending(wired: Wired) -> None:
    wired.transport.write(b"never sent")
    wired.transport.abort()
    await wired.peer.ended.wait()
    assert bytes(wired.peer.received) == b""
    assert wired.recorder.writes == []


async def test_the_write_buffer_size_counts_what_is_pending(wired: Wired) -> None:
    wired.transport.write(b"12345")
    assert wired.transport.get_write_buffer_size() >= 5
