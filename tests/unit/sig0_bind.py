"""BIND's tools for the SIG(0) tests: a KEY from ``dnssec-keygen -T KEY``, and the wire
of an UPDATE ``nsupdate -k`` sends, captured by a one-shot loopback UDP or TCP server."""

from __future__ import annotations

import socket
import struct
import subprocess
import threading
from pathlib import Path

import dns.rdata
from dns.rdtypes.ANY.KEY import KEY

DS = "12345 13 2 " + "ab" * 32


def keygen(tmp_path: Path, algorithm: str) -> tuple[Path, KEY]:
    out = subprocess.run(
        ["dnssec-keygen", "-q", "-K", str(tmp_path), "-T", "KEY", "-a", algorithm,
         "-n", "HOST", "child.test."],
        capture_output=True, text=True, check=True)
    base = str(tmp_path / out.stdout.strip())  # Kchild.test.+013+12345: no with_suffix
    line = next(x for x in Path(base + ".key").read_text().splitlines()
                if x and not x.startswith(";"))
    key = dns.rdata.from_text("IN", "KEY", line.split("KEY", 1)[1].strip())
    assert isinstance(key, KEY)
    return Path(base + ".private"), key


def answer(query: bytes) -> bytes:
    """A bare NOERROR answer with the query's id and opcode."""
    flags = struct.unpack_from("!H", query, 2)[0] | 0x8000
    return query[:2] + struct.pack("!H", flags) + b"\x00" * 8


def serve_once(tcp: bool) -> tuple[int, list[bytes], threading.Thread]:
    kind = socket.SOCK_STREAM if tcp else socket.SOCK_DGRAM
    sock = socket.socket(socket.AF_INET, kind)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(20)
    if tcp:
        sock.listen(1)
    got: list[bytes] = []

    def run() -> None:
        with sock:
            if tcp:
                conn, _ = sock.accept()
                with conn:
                    conn.settimeout(20)
                    size = struct.unpack("!H", recv_exact(conn, 2))[0]
                    got.append(recv_exact(conn, size))
                    reply = answer(got[0])
                    conn.sendall(struct.pack("!H", len(reply)) + reply)
            else:
                data, peer = sock.recvfrom(65535)
                got.append(data)
                sock.sendto(answer(data), peer)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return sock.getsockname()[1], got, thread


def recv_exact(conn: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = conn.recv(size - len(data))
        if not chunk:
            raise ConnectionError("peer closed early")
        data += chunk
    return data


def nsupdate(private: Path, tcp: bool) -> bytes:
    port, got, thread = serve_once(tcp)
    script = (f"server 127.0.0.1 {port}\nzone test.\n"
              f"update delete child.test. DS\nupdate add child.test. 3600 DS {DS}\nsend\n")
    args = ["nsupdate", "-k", str(private)] + (["-v"] if tcp else [])
    done = subprocess.run(args, input=script, capture_output=True, text=True, timeout=30,
                          check=False)
    thread.join(20)
    assert done.returncode == 0, done.stderr
    assert got, "nsupdate sent nothing"
    return got[0]
