"""core/sig0.py against two independent SIG(0) implementations:

- BIND's ``nsupdate -k`` (Debian bind9-dnsutils) with keys from ``dnssec-keygen -T KEY``
  (bind9-utils): its UPDATEs, captured on a loopback socket the test runs (UDP, and TCP
  with ``-v``), must parse and verify here, and a tampered one must not;
- Perl Net::DNS::SEC (libnet-dns-sec-perl): every message :func:`core.sig0.sign` makes
  must verify there (``$packet->sigrr->verify($packet, $keyrr)``), and a tampered one
  must not (so the harness can fail).
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import dns.message
import dns.name
import dns.rdata
import dns.rdatatype
import dns.update
import pytest
from dns.dnssectypes import Algorithm
from prereq import missing, needs, needs_because
from sig0_bind import keygen, nsupdate

from core.sig0 import SIG0_ALGORITHMS, Sig0Error, Sig0Key, parse, sign, verify

CHILD = dns.name.from_text("child.test.")
DS = "12345 13 2 " + "ab" * 32


def _perl_missing() -> str | None:
    if missing("perl"):
        return "perl"
    probe = subprocess.run(["perl", "-MNet::DNS", "-MNet::DNS::SEC", "-e", "1"],
                           capture_output=True, check=False)
    return None if probe.returncode == 0 else "perl modules Net::DNS, Net::DNS::SEC"


# -- BIND nsupdate -> us ------------------------------------------------------------------


@needs("nsupdate", "dnssec-keygen", what="Debian packages bind9-dnsutils and bind9-utils")
@pytest.mark.parametrize("algorithm", ["ECDSAP256SHA256", "ECDSAP384SHA384", "ED25519",
                                       "RSASHA256"])
@pytest.mark.parametrize("tcp", [False, True], ids=["udp", "tcp"])
def test_nsupdate_messages_parse_and_verify(tmp_path: Path, algorithm: str, tcp: bool) -> None:
    private, key = keygen(tmp_path, algorithm)
    assert key.flags == 512  # what `dnssec-keygen -T KEY -n HOST` publishes, as we do
    wire = nsupdate(private, tcp)
    now = int(time.time())
    signed = parse(wire)
    assert isinstance(signed.message, dns.update.UpdateMessage)
    assert signed.signer == CHILD and signed.sig is not None
    assert signed.sig.algorithm == Algorithm[algorithm]
    verify(signed, [key], now=now, name=CHILD)
    changes = {(rrset.name.to_text(), rrset.rdtype) for rrset in signed.message.update}
    assert changes == {("child.test.", dns.rdatatype.DS)}
    assert signed.message.zone[0].name == dns.name.from_text("test.")

    tampered = bytearray(wire)
    tampered[len(signed.unsigned_wire) - 1] ^= 0x01  # last octet of the DS digest
    with pytest.raises(Sig0Error, match="BADSIG"):
        verify(parse(bytes(tampered)), [key], now=now, name=CHILD)


# -- us -> Perl Net::DNS::SEC -------------------------------------------------------------

_VERIFY_PL = r"""
use strict; use warnings; use Net::DNS; use Net::DNS::SEC;
my $keyrr = Net::DNS::RR->new(shift @ARGV);
while (my $hex = <STDIN>) {
    chomp $hex; my $wire = pack('H*', $hex);
    my $packet = Net::DNS::Packet->new(\$wire);
    my $sig = $packet ? $packet->sigrr : undef;
    if (!$sig) { print "NOSIG\n"; next }
    print $sig->verify($packet, $keyrr) ? "OK\n" : "FAIL " . $sig->vrfyerrstr . "\n";
}
"""


def _perl_verify(key: Sig0Key, wires: list[bytes]) -> list[str]:
    key_text = f"{key.name} 0 IN KEY {key.key_rdata()}"
    done = subprocess.run(["perl", "-e", _VERIFY_PL, key_text],
                          input="".join(w.hex() + "\n" for w in wires),
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout.splitlines()


def _messages() -> list[bytes]:
    update = dns.update.UpdateMessage("test.", id=99)
    update.replace("child.test.", 3600, "DS", DS)
    update.add("child.test.", 3600, "NS", "ns1.child.test.")
    update.add("ns1.child.test.", 3600, "A", "192.0.2.1")
    query = dns.message.make_query("child.test.", "ANY", use_edns=0, id=5)
    return [update.to_wire(), query.to_wire()]


@needs_because(_perl_missing(), what="Debian package libnet-dns-sec-perl")
@pytest.mark.parametrize("algorithm", SIG0_ALGORITHMS, ids=lambda a: a.name)
def test_every_signed_message_verifies_in_net_dns_sec(algorithm: Algorithm) -> None:
    now = int(time.time())
    for name in ("child.test.", "Child.Test."):  # we sign the canonical (lowercase) name
        key = Sig0Key.generate(name, algorithm)
        signed = [sign(wire, key, now=now) for wire in _messages()]
        tampered = []
        for wire in signed:
            broken = bytearray(wire)
            broken[14] ^= 0x01  # inside the question/zone name
            tampered.append(bytes(broken))
        results = _perl_verify(key, signed + tampered)
        assert results[:len(signed)] == ["OK"] * len(signed), results
        assert all(r.startswith("FAIL") for r in results[len(signed):]), results
