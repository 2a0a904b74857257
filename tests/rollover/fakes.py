"""Misbehaving infrastructure for the fault tests, all on loopback, all stoppable:

- :class:`StaleNameserver`: a DNS "secondary" in front of one provider's nameserver. It
  forwards every query (UDP and TCP) and remembers the last answer to each question;
  frozen, it keeps answering from memory -- a nameserver that silently stopped picking up
  changes while the provider's API says they were applied.
- :class:`FailingApi`: an HTTP server answering every request with 503.
- :class:`BlackholeApi`: a TCP port that accepts connections and never answers (timeouts).
- :func:`closed_port`: a port nothing listens on (connection refused).
"""

from __future__ import annotations

import contextlib
import http.server
import socket
import socketserver
import struct
import threading
from typing import Any

import dns.exception
import dns.flags
import dns.message
import dns.query

Endpoint = tuple[str, int]


def closed_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class _UDP(socketserver.ThreadingUDPServer):
    daemon_threads = True
    allow_reuse_address = False


class _TCP(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


class StaleNameserver:
    def __init__(self, upstream: Endpoint, address: str = "127.0.0.1") -> None:
        self.upstream = upstream
        self.address = address
        self.frozen = False
        self.memory: dict[tuple[str, int, bool], dns.message.Message] = {}
        self.served_stale = 0
        self._lock = threading.Lock()
        self._servers: list[socketserver.BaseServer] = []
        self.port = 0

    @property
    def endpoint(self) -> Endpoint:
        return self.address, self.port

    @property
    def nameserver(self) -> str:
        return f"{self.address}:{self.port}"

    def start(self) -> StaleNameserver:
        proxy = self

        class UdpHandler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                data, sock = self.request
                reply = proxy.answer(data, tcp=False)
                if reply is not None:
                    sock.sendto(reply, self.client_address)

        class TcpHandler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                conn: socket.socket = self.request
                with contextlib.suppress(OSError):
                    while True:
                        head = _recv_exact(conn, 2)
                        if head is None:
                            return
                        data = _recv_exact(conn, struct.unpack("!H", head)[0])
                        if data is None:
                            return
                        reply = proxy.answer(data, tcp=True)
                        if reply is None:
                            return
                        conn.sendall(struct.pack("!H", len(reply)) + reply)

        for _ in range(20):
            udp = _UDP((self.address, 0), UdpHandler)
            port = udp.server_address[1]
            try:
                tcp = _TCP((self.address, port), TcpHandler)
            except OSError:
                udp.server_close()
                continue
            self.port = port
            self._servers = [udp, tcp]
            break
        else:  # pragma: no cover - 20 collisions in a row
            raise OSError("no free port for the stale nameserver")
        for server in self._servers:
            threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1},
                             daemon=True).start()
        return self

    def stop(self) -> None:
        for server in self._servers:
            server.shutdown()
            server.server_close()
        self._servers = []

    def freeze(self) -> None:
        self.frozen = True

    def thaw(self) -> None:
        self.frozen = False

    def answer(self, wire: bytes, *, tcp: bool) -> bytes | None:
        try:
            query = dns.message.from_wire(wire)
        except dns.exception.DNSException:
            return None
        question = query.question[0]
        key = (question.name.to_text().lower(), int(question.rdtype),
               bool(query.ednsflags & dns.flags.DO))
        with self._lock:
            remembered = self.memory.get(key) if self.frozen else None
            if remembered is not None:
                self.served_stale += 1
        if remembered is None:
            try:
                fresh, _ = dns.query.udp_with_fallback(query, self.upstream[0],
                                                       port=self.upstream[1], timeout=2.0)
            except (dns.exception.DNSException, OSError):
                return None
            with self._lock:
                if not self.frozen:
                    self.memory[key] = fresh
            remembered = fresh
        reply = dns.message.from_wire(remembered.to_wire())
        reply.id = query.id
        limit = 65535 if tcp else max(512, query.payload)
        try:
            return reply.to_wire(max_size=limit)
        except dns.exception.TooBig:
            reply.flags |= dns.flags.TC
            reply.answer = []
            reply.authority = []
            reply.additional = []
            return reply.to_wire()


def _recv_exact(conn: socket.socket, n: int) -> bytes | None:
    buf = b""
    while len(buf) < n:
        chunk = conn.recv(n - len(buf))
        if not chunk:
            return None
        buf += chunk
    return buf


class _Http(http.server.ThreadingHTTPServer):
    daemon_threads = True


class FailingApi:
    """Every request gets ``status`` (503: the API is up but broken behind it)."""

    def __init__(self, status: int = 503) -> None:
        self.status = status
        self.requests = 0
        api = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def _fail(self) -> None:
                api.requests += 1
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    self.rfile.read(length)
                body = b'{"error": "backend unavailable (injected by the test)"}'
                self.send_response(api.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:
                self._fail()

            def do_PUT(self) -> None:
                self._fail()

            def do_POST(self) -> None:
                self._fail()

            def do_PATCH(self) -> None:
                self._fail()

            def do_DELETE(self) -> None:
                self._fail()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = _Http(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever,
                                        kwargs={"poll_interval": 0.1}, daemon=True)

    def __enter__(self) -> FailingApi:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


class BlackholeApi:
    """Accepts TCP connections (kernel backlog) and never reads or answers."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"

    def __enter__(self) -> BlackholeApi:
        return self

    def __exit__(self, *exc: object) -> None:
        self.sock.close()
