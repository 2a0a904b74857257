"""A nameserver held behind: a UDP forwarder in front of one real nameserver that answers
TXT queries with REFUSED while its gate is closed and forwards everything else (and, once
opened, TXT queries too). The controller is pointed at it as that provider's nameserver,
so a ``--wait`` lasts as long as the test wants: a real provider lagging behind its API,
without touching the controller's code."""

from __future__ import annotations

import socket
import threading
from types import TracebackType

import dns.exception
import dns.message
import dns.rcode
import dns.rdatatype


class TxtGate:
    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self.opened = threading.Event()
        self.refused = 0  # TXT queries answered REFUSED while closed
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.settimeout(0.2)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    @property
    def address(self) -> str:
        host, port = self._sock.getsockname()
        return f"{host}:{port}"

    def __enter__(self) -> TxtGate:
        self._thread.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._stop.set()
        self._thread.join(5)
        self._sock.close()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                wire, client = self._sock.recvfrom(65535)
            except TimeoutError:
                continue
            threading.Thread(target=self._answer, args=(wire, client), daemon=True).start()

    def _answer(self, wire: bytes, client: tuple[str, int]) -> None:
        try:
            query = dns.message.from_wire(wire)
        except dns.exception.DNSException:
            return
        if (not self.opened.is_set() and query.question
                and query.question[0].rdtype == dns.rdatatype.TXT):
            self.refused += 1
            response = dns.message.make_response(query)
            response.set_rcode(dns.rcode.REFUSED)
            self._sock.sendto(response.to_wire(), client)
            return
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as up:
            up.settimeout(2.0)
            up.sendto(wire, self.upstream)
            try:
                answer, _ = up.recvfrom(65535)
            except TimeoutError:
                return
        self._sock.sendto(answer, client)
