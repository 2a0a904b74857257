"""The rfc2136 adapter against a real Knot DNS 3.2 signing with its own keys: own vs
foreign keys, foreign DNSKEY/CDS/NS written by TSIG-signed UPDATE, and every refusal
(BADKEY, BADSIG, an UPDATE no ACL allows, a server that drops foreign DNSKEYs) as a clear
ProviderError with nothing changed."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import dns.dnssec
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from knot2 import OTHER_TSIG_NAME, TSIG_NAME, KnotSigner
from prereq import needs

from core.config import Rfc2136ProviderConfig
from core.errors import ProviderAuthError, ProviderError
from core.keys import Key
from providers.rfc2136 import Rfc2136Provider
from providers.rfc2136.transport import Transport

pytestmark = [pytest.mark.lab,
              needs("knotd", "knotc", "keymgr", what="Knot DNS 3.2, Debian package knot")]

ZONE = "upd.test."
NS = ["ns1.p0.test."]
T = TypeVar("T")


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


def foreign_keys() -> list[Key]:
    """A KSK and a ZSK no server holds (another signer's, as far as Knot knows)."""
    return [Key.from_rdata(dns.dnssec.make_dnskey(
        ec.generate_private_key(ec.SECP256R1()).public_key(), 13, flags=flags))
        for flags in (257, 256)]


def adapter(knot: KnotSigner, *, tsig_name: str = TSIG_NAME,
            secret: str | None = None) -> Rfc2136Provider:
    return Rfc2136Provider(Rfc2136ProviderConfig(
        name="u0", server=knot.nameserver, tsig_name=tsig_name,
        tsig_secret=secret or knot.secret, nameservers=[knot.nameserver]))


def started(tmp_path: Path, management: str) -> Iterator[KnotSigner]:
    knot = KnotSigner.make("u0", tmp_path / "u0", [ZONE], NS, 2, dnskey_management=management)
    try:
        knot.start()
        knot.wait_signed(ZONE)
        yield knot
    finally:
        knot.stop()


@pytest.fixture
def knot(tmp_path: Path) -> Iterator[KnotSigner]:
    yield from started(tmp_path, "incremental")


def test_own_and_foreign_keys_by_update(knot: KnotSigner) -> None:
    p = adapter(knot)
    first = run(p.read_zone(ZONE))
    own = {k.key for k in first.own_keys}
    assert {k.text for k in own} == {Key.parse(t).text for t in knot.dnskeys(ZONE)}
    assert sorted(k.role for k in first.own_keys) == ["ksk", "zsk"]
    assert first.foreign_dnskeys == frozenset()

    foreign = foreign_keys()
    run(p.set_foreign_dnskeys(ZONE, foreign, 2))
    after = run(p.read_zone(ZONE))
    # Knot keeps the added keys and still signs with its own; the added ones are foreign.
    assert {k.key for k in after.own_keys} == own
    assert after.foreign_dnskeys == frozenset(foreign)
    assert {Key.parse(t) for t in knot.dnskeys(ZONE)} == own | set(foreign)

    # The complete set is what is asked for: dropping one removes it, own keys stay.
    run(p.set_foreign_dnskeys(ZONE, foreign[:1], 2))
    assert run(p.read_zone(ZONE)).foreign_dnskeys == frozenset(foreign[:1])
    assert {Key.parse(t) for t in knot.dnskeys(ZONE)} == own | {foreign[0]}


def test_prepublished_own_key_is_learnt_not_deleted(knot: KnotSigner) -> None:
    """Knot publishes a successor ZSK a day before it signs: no signature shows it is
    Knot's. The first write takes it for a stale foreign key and deletes it; Knot puts it
    back at once (it re-adds its own keys when signing), and from then on the adapter
    reports it as Knot's own key, published and not active."""
    p = adapter(knot)
    before = {k.key for k in run(p.read_zone(ZONE)).own_keys}
    knot.keymgr(ZONE, "generate", "algorithm=13", "ksk=no", "publish=+0", "active=+1d")
    knot.knotc("zone-sign", ZONE)
    wait = 0
    while len(knot.dnskeys(ZONE)) < 3 and wait < 50:
        time.sleep(0.1)
        wait += 1
    (successor,) = {Key.parse(t) for t in knot.dnskeys(ZONE)} - before
    assert run(p.read_zone(ZONE)).foreign_dnskeys == {successor}  # unknown yet

    foreign = foreign_keys()
    run(p.set_foreign_dnskeys(ZONE, foreign, 2))
    state = run(p.read_zone(ZONE))
    assert state.foreign_dnskeys == frozenset(foreign)
    mine = {k.key: k for k in state.own_keys}
    assert set(mine) == before | {successor}
    assert mine[successor].published and not mine[successor].active
    assert successor in {Key.parse(t) for t in knot.dnskeys(ZONE)}


def test_cds_and_ns_by_update(knot: KnotSigner) -> None:
    p = adapter(knot)
    state = run(p.read_zone(ZONE))
    ksk = next(k.key for k in state.own_keys if k.role == "ksk")
    other = foreign_keys()[0]
    run(p.set_cds(ZONE, [ksk.ds(ZONE), other.ds(ZONE)], [ksk, other], 2))
    run(p.set_apex_rrset(ZONE, "NS", [*NS, "ns1.u0.test."], 2))
    after = run(p.read_zone(ZONE))
    assert after.cds == {ksk.ds(ZONE), other.ds(ZONE)}
    assert after.cdnskey == {ksk, other}
    assert after.ns == {*NS, "ns1.u0.test."}
    run(p.set_apex_rrset(ZONE, "NS", NS, 2))
    assert run(p.read_zone(ZONE)).ns == set(NS)


@pytest.mark.parametrize(("tsig_name", "secret", "named"), [
    (TSIG_NAME, "QUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUE=", "BADSIG"),
    ("nobody.", None, "BADKEY"),
    # Knot answers an UPDATE its ACL denies to a known key (this one may update A records
    # only) with BADKEY as well.
    (OTHER_TSIG_NAME, None, "BADKEY"),
])
def test_rejected_update_changes_nothing(knot: KnotSigner, tsig_name: str,
                                         secret: str | None, named: str) -> None:
    before = knot.dnskeys(ZONE)
    with pytest.raises(ProviderAuthError) as err:
        run(adapter(knot, tsig_name=tsig_name, secret=secret)
            .set_foreign_dnskeys(ZONE, foreign_keys(), 2))
    message = str(err.value)
    assert any(code in message for code in named.split("|")), message
    assert "provider 'u0'" in message and tsig_name in message
    assert knot.dnskeys(ZONE) == before


def test_update_for_zone_not_hosted_is_refused(knot: KnotSigner) -> None:
    """A plain error rcode (no TSIG error): Knot is not authoritative for the zone."""
    config = Rfc2136ProviderConfig(name="u0", server=knot.nameserver, tsig_name=TSIG_NAME,
                                   tsig_secret=knot.secret, nameservers=[knot.nameserver])
    dns_ = Transport(config)
    update = dns_.message("elsewhere.test.")
    update.add("elsewhere.test.", 2, "DNSKEY", foreign_keys()[0].text)
    with pytest.raises(ProviderAuthError) as err:
        run(dns_.update("elsewhere.test.", update, "DNSKEY"))
    assert "NOTAUTH" in str(err.value) or "REFUSED" in str(err.value), err.value
    assert "primary for elsewhere.test." in str(err.value)


def test_read_proves_the_key(knot: KnotSigner) -> None:
    """Reads are unsigned, but every read first sends one TSIG-signed SOA query: a wrong
    secret fails the read (so the first observation of a sync), not only the UPDATE."""
    bad = adapter(knot, secret="QUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUE=")
    with pytest.raises(ProviderAuthError, match="BADSIG"):
        run(bad.read_zone(ZONE))
    with pytest.raises(ProviderAuthError, match="BADKEY"):
        run(adapter(knot, tsig_name="nobody.").read_zone(ZONE))
    assert run(adapter(knot).read_zone(ZONE)).own_keys


@pytest.fixture
def full_knot(tmp_path: Path) -> Iterator[KnotSigner]:
    yield from started(tmp_path, "full")


def test_server_dropping_foreign_dnskeys_is_refused(full_knot: KnotSigner) -> None:
    """``dnskey-management: full`` (like BIND 9.18 inline signing) accepts the UPDATE but
    serves only its own keys after re-signing: the adapter says so instead of trusting it."""
    with pytest.raises(ProviderError) as err:
        run(adapter(full_knot).set_foreign_dnskeys(ZONE, foreign_keys(), 2))
    assert "does not serve the DNSKEY(s) it added" in str(err.value)
    assert "docs/providers/rfc2136.md" in str(err.value)
