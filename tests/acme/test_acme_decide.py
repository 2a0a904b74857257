"""The pure ACME decisions (orchestrator/decide/acme.py), without servers."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import dns.dnssec
import dns.dnssectypes
import dns.name
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rrset
import pytest
from acmekit import digest
from cryptography.hazmat.primitives.asymmetric import ec

from core.errors import UsageError
from orchestrator.decide import acme
from orchestrator.decide.acme import (
    ChainError,
    NameAnswer,
    PersistRecord,
    ServedTxt,
    served_problem,
)

N = dns.name.from_text


def test_validation_name() -> None:
    assert acme.validation_name("www.example.com") == N("_acme-challenge.www.example.com.")
    assert acme.validation_name("*.example.com.") == N("_acme-challenge.example.com.")
    # acme.sh passes the full challenge name
    assert acme.validation_name("_acme-challenge.example.com") == N(
        "_acme-challenge.example.com.")
    # lego passes the record's owner, a CNAME at the challenge name already followed:
    # taken as is, no label in front
    assert acme.validation_name("www.chal.example.net.", None) == N("www.chal.example.net.")
    assert acme.validation_name("_acme-challenge.x.example.com.", None) == N(
        "_acme-challenge.x.example.com.")
    assert acme.validation_name("example.com", acme.PERSIST_LABEL) == N(
        "_validation-persist.example.com.")
    for bad in ("com", "a..b", ""):
        with pytest.raises(UsageError):
            acme.validation_name(bad)


def test_check_digest() -> None:
    value = digest("x")
    assert len(value) == 43 and acme.check_digest(f" {value} ") == value
    for bad in ("short", value + "A", value[:-1] + "=", value[:-1] + "/"):
        with pytest.raises(UsageError, match="not an ACME DNS-01 value"):
            acme.check_digest(bad)
    with pytest.raises(UsageError, match="not canonical"):
        acme.check_digest("A" * 42 + "B")  # 'B' sets bits beyond 256


def test_txt_set_arithmetic() -> None:
    a, b = digest("a"), digest("b")
    one = acme.with_value([], a)
    assert one == [f'"{a}"']
    assert acme.with_value(one, a) is None  # already there: no write
    two = acme.with_value([*one, '"other"'], b)
    assert two is not None and sorted(acme.txt_text(r) for r in two) == sorted([a, b, "other"])
    assert acme.challenge_values(two) == sorted([a, b]) or set(
        acme.challenge_values(two)) == {a, b}
    assert acme.without_values(two, [a]) == [r for r in two if acme.txt_text(r) != a]
    assert acme.without_values(two, [digest("c")]) is None
    long = "x" * 300
    record = acme.txt_record(long)
    assert record.count('"') == 4 and acme.txt_text(record) == long


def test_zone_and_chain() -> None:
    zones = [N("example.com."), N("sub.example.com."), N("chal.net.")]
    assert acme.zone_of(N("a.sub.example.com."), zones) == N("sub.example.com.")
    assert acme.zone_of(N("a.example.org."), zones) is None
    with pytest.raises(ChainError, match="CNAME loop"):
        acme.check_hop([N("a.example.com."), N("b.example.com.")], N("a.example.com."))
    with pytest.raises(ChainError, match="longer than"):
        acme.check_hop([N(f"n{i}.example.com.") for i in range(acme.MAX_CHAIN + 1)],
                       N("x.example.com."))
    name = N("_acme-challenge.example.com.")
    same = [NameAnswer("s1", "cname", N("t.chal.net.")), NameAnswer("s2", "cname",
                                                                     N("t.chal.net."))]
    assert acme.agreed_target(name, same) == N("t.chal.net.")
    assert acme.agreed_target(name, [NameAnswer("s1", "nxdomain"),
                                     NameAnswer("s2", "nxdomain")]) is None
    with pytest.raises(ChainError, match="disagree"):
        acme.agreed_target(name, [same[0], NameAnswer("s2", "nodata")])
    with pytest.raises(ChainError, match="delegated away"):
        acme.agreed_target(name, [NameAnswer("s1", "referral", detail="delegated away")])


def _signed(zone: dns.name.Name, name: dns.name.Name, values: list[str]
            ) -> tuple[dns.rrset.RRset, dns.rrset.RRset, dns.rrset.RRset]:
    key = ec.generate_private_key(ec.SECP256R1())
    dnskey = dns.dnssec.make_dnskey(key.public_key(), dns.dnssectypes.Algorithm.ECDSAP256SHA256,
                                    flags=257)
    keys = dns.rrset.from_rdata(zone, 60, dnskey)
    txt = dns.rrset.from_text(name, 60, "IN", "TXT", *(f'"{v}"' for v in values))
    now = int(time.time())
    sig = dns.dnssec.sign(txt, key, zone, dnskey, inception=now - 60, expiration=now + 3600)
    return txt, dns.rrset.from_rdata(name, 60, sig), keys


def test_served_problem_validates_under_the_servers_dnskey() -> None:
    zone, name = N("chal.net."), N("t.chal.net.")
    value, now = digest("v"), datetime.now(UTC)
    txt, sigs, keys = _signed(zone, name, [value])
    ok = ServedTxt("p0", "ns", "127.0.0.1:53", txt, sigs, keys)
    assert served_problem(ok, [value], zone, signed=True, now=now) is None
    missing = served_problem(ok, [digest("w")], zone, signed=True, now=now)
    assert missing is not None and "does not serve" in missing
    _, _, other_keys = _signed(zone, name, [value])  # another key: does not validate
    bad = ServedTxt("p1", "ns", "127.0.0.2:53", txt, sigs, other_keys)
    assert "does not validate" in (served_problem(bad, [value], zone, signed=True, now=now)
                                   or "")
    unsigned = ServedTxt("p1", "ns", "127.0.0.2:53", txt, None, keys)
    assert "without an RRSIG" in (served_problem(unsigned, [value], zone, signed=True,
                                                 now=now) or "")
    assert served_problem(unsigned, [value], zone, signed=False, now=now) is None
    later = now + timedelta(hours=2)  # the signature has expired by then
    assert served_problem(ok, [value], zone, signed=True, now=later) is not None
    assert acme.absent_problem(ok, [value]) == f"still serves {value}"
    assert acme.absent_problem(ok, [digest("w")]) is None


def test_persist_record_syntax_and_validation() -> None:
    uri = "https://ca.example/acct/123"
    rec = PersistRecord(acme.check_issuer("Authority.Example."), acme.check_account_uri(uri),
                        wildcard=True, persist_until=1767225600)
    assert rec.value == ("authority.example; accounturi=https://ca.example/acct/123; "
                         "policy=wildcard; persistUntil=1767225600")
    assert acme.persist_params(rec.value) == ("authority.example", {
        "accounturi": uri, "policy": "wildcard", "persistuntil": "1767225600"})
    assert acme.replaces("authority.example; accounturi=" + uri, rec)
    assert not acme.replaces("other.example; accounturi=" + uri, rec)
    assert not acme.replaces("authority.example; accounturi=https://ca.example/acct/9", rec)
    for bad in ("nodot", "bad_label.example", "ex ample.com", "bücher.example"):
        with pytest.raises(UsageError):
            acme.check_issuer(bad)
    for bad in ("http://ca.example/acct/1", "https://ca.example/a;b", "ca.example/acct",
                "https://ca.example/a b"):
        with pytest.raises(UsageError):
            acme.check_account_uri(bad)
    now = datetime(2026, 1, 1, tzinfo=UTC)
    assert acme.persist_until("2027-01-01", now) == 1798761600
    assert acme.persist_until("2027-01-01T00:00:00Z", now) == 1798761600
    assert acme.persist_until("1798761600", now) == 1798761600
    for bad in ("2025-01-01", "tomorrow", "1"):
        with pytest.raises(UsageError):
            acme.persist_until(bad, now)
