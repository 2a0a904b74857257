"""The agent's DNS listener: UDP and TCP (RFC 1035 sec. 4.2.2 two-byte length framing,
several messages per connection, RFC 7766) on every ``listen`` address.

The listener owns framing, size limits and timeouts; every message goes to one handler,
and nothing a handler raises escapes: it is logged and answered SERVFAIL, so a bug
triggered by one request never stops the agent serving the others.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

import dns.edns
import dns.rcode

from orchestrator.parent_agent import wire

log = logging.getLogger(__name__)

Source = tuple[str, int]
Handler = Callable[[bytes, Source, bool], Awaitable[bytes | None]]

TCP_IDLE = 10.0  # seconds a TCP connection may wait for its next message
MAX_TCP_CONNECTIONS = 128
MAX_UDP_IN_FLIGHT = 512


async def answer_safely(handler: Handler, data: bytes, source: Source, tcp: bool
                        ) -> bytes | None:
    """The handler's answer; a header-only FORMERR for an oversized message; SERVFAIL
    when the handler fails; None (no answer) for a message without a full header."""
    head = wire.header(data)
    if head is None or head.is_response:
        return None  # nothing to answer to; answers are never answered (no loops)
    if len(data) > wire.MAX_MESSAGE:
        return wire.error_answer(head, dns.rcode.FORMERR, dns.edns.EDECode.OTHER,
                                 f"message of {len(data)} octets is over the "
                                 f"{wire.MAX_MESSAGE} limit")
    try:
        return await handler(data, source, tcp)
    except asyncio.CancelledError:
        raise
    except Exception:
        log.exception("parent agent: request from %s:%d failed", *source)
        return wire.error_answer(head, dns.rcode.SERVFAIL, dns.edns.EDECode.OTHER,
                                 "internal error; see the agent's log")


class _Udp(asyncio.DatagramProtocol):
    def __init__(self, handler: Handler) -> None:
        self._handler = handler
        self._transport: asyncio.DatagramTransport | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]  # asyncio's own type

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        if len(self._tasks) >= MAX_UDP_IN_FLIGHT:
            return  # shed load; the sender retries (or moves to TCP)
        source = (str(addr[0]), int(addr[1]))
        task = asyncio.get_running_loop().create_task(self._one(data, source))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _one(self, data: bytes, source: Source) -> None:
        answer = await answer_safely(self._handler, data, source, False)
        if answer is not None and self._transport is not None:
            if len(answer) > wire.UDP_PAYLOAD:
                answer = _truncated(answer)
            self._transport.sendto(answer, source)


def _truncated(answer: bytes) -> bytes:
    """The header of ``answer`` with TC set and no records: retry over TCP."""
    flags = int.from_bytes(answer[2:4], "big") | 0x0200
    return answer[:2] + flags.to_bytes(2, "big") + b"\x00" * 8


class Listener:
    """UDP and TCP servers on ``addresses`` ((host, port) pairs)."""

    def __init__(self, handler: Handler) -> None:
        self._handler = handler
        self._servers: list[asyncio.Server] = []
        self._udp: list[asyncio.DatagramTransport] = []
        self._connections = asyncio.Semaphore(MAX_TCP_CONNECTIONS)

    async def start(self, addresses: list[Source]) -> list[Source]:
        """Bind everything (all or nothing); return the bound (host, port)s, for port 0."""
        loop = asyncio.get_running_loop()
        bound: list[Source] = []
        try:
            for host, port in addresses:
                server = await asyncio.start_server(self._tcp, host, port)
                self._servers.append(server)
                real_port = int(server.sockets[0].getsockname()[1])
                transport, _ = await loop.create_datagram_endpoint(
                    lambda: _Udp(self._handler), local_addr=(host, real_port))
                self._udp.append(transport)
                bound.append((host, real_port))
        except BaseException:
            await self.stop()
            raise
        return bound

    async def stop(self) -> None:
        for transport in self._udp:
            transport.close()
        for server in self._servers:
            server.close()
        for server in self._servers:
            await server.wait_closed()
        self._udp, self._servers = [], []

    async def _tcp(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername") or ("?", 0)
        source = (str(peer[0]), int(peer[1]))
        if self._connections.locked():
            writer.close()  # too many open connections: shed this one
            return
        async with self._connections:
            try:
                while await self._tcp_message(reader, writer, source):
                    pass
            except (asyncio.IncompleteReadError, TimeoutError, ConnectionError):
                pass  # truncated message, idle or reset connection: just close it
            finally:
                writer.close()

    async def _tcp_message(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                           source: Source) -> bool:
        """One framed message and its answer; False to close the connection."""
        size = int.from_bytes(await asyncio.wait_for(reader.readexactly(2), TCP_IDLE), "big")
        if size > wire.MAX_MESSAGE:
            head = wire.header(await asyncio.wait_for(reader.readexactly(wire.HEADER),
                                                      TCP_IDLE))
            if head is not None:
                answer = wire.error_answer(head, dns.rcode.FORMERR, dns.edns.EDECode.OTHER,
                                           f"message of {size} octets is over the "
                                           f"{wire.MAX_MESSAGE} limit")
                writer.write(len(answer).to_bytes(2, "big") + answer)
                await writer.drain()
            return False
        data = await asyncio.wait_for(reader.readexactly(size), TCP_IDLE)
        reply = await answer_safely(self._handler, data, source, True)
        if reply is None:
            return False
        writer.write(len(reply).to_bytes(2, "big") + reply)
        await writer.drain()
        return True
