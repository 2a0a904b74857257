"""The PowerDNS client's TLS trust (``ca_file``) and proxy settings (``proxy_from_env``),
against a real HTTPS server on loopback whose certificate a test CA signed."""

from __future__ import annotations

import asyncio
import datetime
import http.server
import ipaddress
import json
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from pydantic import SecretStr

from core.config import ProviderConfig
from core.errors import ProviderUnreachable
from providers.powerdns import PowerDNSProvider


def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def make_pki(directory: Path) -> tuple[Path, Path, Path]:
    """(CA certificate, server certificate for 127.0.0.1, server key), as PEM files."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (x509.CertificateBuilder().subject_name(_name("test CA")).issuer_name(_name("test CA"))
          .public_key(ca_key.public_key()).serial_number(1)
          .not_valid_before(now - datetime.timedelta(minutes=5))
          .not_valid_after(now + datetime.timedelta(hours=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder().subject_name(_name("127.0.0.1")).issuer_name(ca.subject)
            .public_key(key.public_key()).serial_number(2)
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(hours=1))
            .add_extension(x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    paths = (directory / "ca.pem", directory / "server.pem", directory / "server.key")
    paths[0].write_bytes(_pem(ca))
    paths[1].write_bytes(_pem(cert))
    paths[2].write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return paths


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = json.dumps({"type": "Server", "id": "localhost",
                           "daemon_type": "authoritative"}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_args: object) -> None:
        pass


@pytest.fixture
def https(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """(https URL of a PowerDNS-like server on loopback, the CA file that signed it)."""
    ca, cert, key = make_pki(tmp_path)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"https://127.0.0.1:{server.server_address[1]}", ca
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def check(url: str, **extra: object) -> None:
    config = ProviderConfig.model_validate({
        "name": "p0", "type": "powerdns", "api_url": url, "api_key": SecretStr("k"),
        "nameservers": ["127.0.0.1:5300"], "timeout": "2s", **extra})

    async def run() -> None:
        provider = PowerDNSProvider(config, attempts=1)
        try:
            await provider.check_access()
        finally:
            await provider.aclose()

    asyncio.run(run())


@pytest.fixture(autouse=True)
def _no_proxy_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy", "NO_PROXY",
                "no_proxy", "SSL_CERT_FILE", "SSL_CERT_DIR"):
        monkeypatch.delenv(var, raising=False)


def test_ca_file_is_trusted(https: tuple[str, Path]) -> None:
    url, ca = https
    check(url, ca_file=str(ca))


def test_without_ca_file_a_private_ca_is_not_trusted(https: tuple[str, Path]) -> None:
    url, _ = https
    with pytest.raises(ProviderUnreachable, match=r"CERTIFICATE_VERIFY_FAILED|certificate"):
        check(url)


def test_environment_proxy_is_ignored_unless_configured(
    https: tuple[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    url, ca = https
    # A proxy nobody configured for this provider: nothing listens there.
    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:9")
    check(url, ca_file=str(ca))  # went straight to the API
    with pytest.raises(ProviderUnreachable, match="cannot connect"):
        check(url, ca_file=str(ca), proxy_from_env=True)  # went to the proxy
