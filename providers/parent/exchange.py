"""One DNS request and its response over TCP (RFC 7766 two-octet length framing), as raw
wire. The caller parses the answer with ``core.sig0.parse``, because a receiver that signs
its answers appends a SIG(0) that ``dns.message.from_wire`` rejects."""

from __future__ import annotations

import asyncio
import contextlib
import struct

from providers.parent.errors import ParentUnreachable


async def tcp_exchange(host: str, port: int, wire: bytes, *, timeout: float) -> bytes:
    """Send ``wire`` to ``host``:``port`` over TCP and return the first answer's wire."""
    where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    try:
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_connection(host, port)
            try:
                writer.write(struct.pack("!H", len(wire)) + wire)
                await writer.drain()
                (size,) = struct.unpack("!H", await reader.readexactly(2))
                return await reader.readexactly(size)
            finally:
                writer.close()
                # The answer is in hand; a reset while closing changes nothing.
                with contextlib.suppress(OSError):
                    await writer.wait_closed()
    except TimeoutError:
        raise ParentUnreachable(f"UPDATE receiver {where}: no answer within {timeout:g}s "
                                "(is the DSYNC target's port right, and open to us?)") from None
    except asyncio.IncompleteReadError:
        raise ParentUnreachable(f"UPDATE receiver {where} closed the connection without "
                                "a complete answer") from None
    except OSError as exc:
        raise ParentUnreachable(f"UPDATE receiver {where}: {exc.strerror or exc}") from None
