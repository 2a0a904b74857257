"""BIND 9.18 (Debian's) with ``dnssec-policy`` and inline signing as an rfc2136 signer:
it applies UPDATEs to the unsigned zone, where it holds no keys, and answers a DNSKEY
update with SERVFAIL ("found no active private keys" in its log). The adapter says so,
naming the reason, and nothing is served differently."""

from __future__ import annotations

import asyncio
import base64
import secrets
import time
from collections.abc import Iterator
from pathlib import Path

import dns.message
import dns.query
import dns.rdatatype
import pytest
from prereq import needs
from test_rfc2136_adapter import foreign_keys

from core.config import Rfc2136ProviderConfig
from core.errors import ProviderError
from multisigner_lab import net, proc
from providers.rfc2136 import Rfc2136Provider

pytestmark = [pytest.mark.lab, needs("named", what="BIND 9.18, Debian package bind9")]

ZONE = "bind.test."
ADDRESS = "127.0.0.1"  # named listens only on addresses of an interface

CONF = """\
options {{
    directory "{dir}";
    listen-on port {port} {{ {address}; }};
    listen-on-v6 {{ none; }};
    pid-file "{dir}/named.pid";
    recursion no;
    dnssec-validation no;
}};
controls {{ }};
key "u0-update." {{ algorithm hmac-sha256; secret "{secret}"; }};
zone "{zone}" {{
    type primary;
    file "{dir}/zone.db";
    dnssec-policy default;
    inline-signing yes;
    allow-update {{ key "u0-update."; }};
}};
"""


def dnskeys(port: int) -> frozenset[str]:
    resp = dns.query.tcp(dns.message.make_query(ZONE, "DNSKEY"), ADDRESS, port=port, timeout=2)
    return frozenset(rd.to_text() for rr in resp.answer if rr.rdtype == dns.rdatatype.DNSKEY
                     for rd in rr)


@pytest.fixture
def bind(tmp_path: Path) -> Iterator[tuple[int, str]]:
    """named serving ZONE signed with its own CSK; (port, TSIG secret)."""
    secret = base64.b64encode(secrets.token_bytes(32)).decode()
    port = net.free_port(ADDRESS)
    (tmp_path / "zone.db").write_text(
        f"$TTL 2\n{ZONE} IN SOA ns1.p0.test. h.{ZONE} 1 7200 3600 1209600 2\n"
        f"{ZONE} IN NS ns1.p0.test.\nwww.{ZONE} IN A 192.0.2.1\n")
    conf = tmp_path / "named.conf"
    conf.write_text(CONF.format(dir=tmp_path, port=port, address=ADDRESS, secret=secret,
                                zone=ZONE))
    named = proc.spawn("named", ["named", "-g", "-c", str(conf)], tmp_path)
    try:
        proc.wait_ready(named, proc.dns_probe(ADDRESS, port), 10)
        deadline = time.monotonic() + 15
        while not dnskeys(port) and time.monotonic() < deadline:
            time.sleep(0.2)  # until BIND has made its key and signed
        assert dnskeys(port), "named did not sign the zone"
        yield port, secret
    finally:
        proc.stop(named)


def test_inline_signing_bind_refuses_foreign_dnskeys(bind: tuple[int, str]) -> None:
    port, secret = bind
    server = f"{ADDRESS}:{port}"
    adapter = Rfc2136Provider(Rfc2136ProviderConfig(
        name="b0", server=server, tsig_name="u0-update.", tsig_secret=secret,
        nameservers=[server]))
    state = asyncio.run(adapter.read_zone(ZONE))
    assert [k.role for k in state.own_keys] == ["csk"]  # BIND's own key, by its signatures
    before = dnskeys(port)
    with pytest.raises(ProviderError) as err:
        asyncio.run(adapter.set_foreign_dnskeys(ZONE, foreign_keys(), 2))
    message = str(err.value)
    assert "SERVFAIL" in message and "inline signing" in message, message
    assert dnskeys(port) == before
