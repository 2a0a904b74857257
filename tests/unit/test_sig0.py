"""core/sig0.py: SIG(0) signing, parsing and verification on the wire (RFC 2931).

Interoperability with BIND's nsupdate and Perl Net::DNS::SEC is in test_sig0_interop.py."""

from __future__ import annotations

import contextlib
import struct

import dns.dnssec
import dns.message
import dns.name
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rrset
import dns.update
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from dns.dnssecalgs import get_algorithm_cls
from dns.dnssectypes import Algorithm
from dns.rdtypes.ANY.KEY import KEY
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core import keystate
from core.sig0 import (
    DEFAULT_FUDGE,
    HOST_KEY_FLAGS,
    SIG0_ALGORITHMS,
    Sig0Error,
    Sig0Key,
    key_tag_of,
    parse,
    sign,
    verify,
)

NOW = 1_790_000_000
CHILD = dns.name.from_text("child.test.")
DS = "12345 13 2 " + "ab" * 32


def update_wire() -> bytes:
    update = dns.update.UpdateMessage("test.", id=4242)
    update.replace("child.test.", 3600, "DS", DS)
    update.delete("child.test.", "NS", "ns9.example.")
    update.add("child.test.", 3600, "NS", "ns1.example.")
    return update.to_wire()


@pytest.fixture(scope="module", params=SIG0_ALGORITHMS, ids=lambda a: a.name)
def key(request: pytest.FixtureRequest) -> Sig0Key:
    return Sig0Key.generate(CHILD, request.param)


def other_key(key: Sig0Key) -> Sig0Key:
    """A key of the same algorithm and name whose tag differs (tags collide 1 in 65536)."""
    while True:
        other = Sig0Key.generate(key.name, key.algorithm)
        if other.key_tag != key.key_tag:
            return other


def reason(excinfo: pytest.ExceptionInfo[Sig0Error]) -> tuple[str, dns.rcode.Rcode]:
    return excinfo.value.reason, excinfo.value.rcode


# -- round trip ---------------------------------------------------------------------------


def test_round_trip_update(key: Sig0Key) -> None:
    wire = update_wire()
    signed_wire = sign(wire, key, now=NOW)
    signed = parse(signed_wire)
    assert isinstance(signed.message, dns.update.UpdateMessage)
    assert signed.unsigned_wire == wire  # exactly the message before signing
    assert signed.message.to_wire() == wire
    assert signed.signer == CHILD and signed.key_tag == key.key_tag
    assert signed.sig is not None
    assert (signed.sig.inception, signed.sig.expiration) == (NOW - 300, NOW + 300)
    assert signed.sig.algorithm == key.algorithm
    verify(signed, [key.key_rdata()], now=NOW, name=CHILD)


def test_sign_appends_one_rr_and_keeps_the_message(key: Sig0Key) -> None:
    wire = update_wire()
    signed_wire = sign(wire, key, now=NOW, validity=60, skew=0)
    assert signed_wire[:10] == wire[:10] and signed_wire[12:len(wire)] == wire[12:]
    assert struct.unpack_from("!H", signed_wire, 10)[0] == struct.unpack_from("!H", wire, 10)[0] + 1
    rr = signed_wire[len(wire):]
    # owner ".", type SIG, class ANY, TTL 0 (RFC 2931 sec. 3)
    assert rr[:9] == b"\x00" + struct.pack("!HHI", 24, 255, 0)
    signed = parse(signed_wire)
    assert signed.sig is not None and signed.sig.expiration - signed.sig.inception == 60


def test_query_with_edns_and_keystate_keeps_its_opt(key: Sig0Key) -> None:
    query = dns.message.make_query("child.test.", "ANY", id=7)
    keystate.add_option(query, keystate.KeyState(key.key_tag, keystate.KeyStateCode.INQUIRY_KEY))
    signed = parse(sign(query.to_wire(), key, now=NOW))
    verify(signed, [key.key_rdata()], now=NOW, name=CHILD)
    asked = keystate.find(signed.message)
    assert asked is not None and asked.key_id == key.key_tag
    assert asked.state == keystate.KeyStateCode.INQUIRY_KEY


def test_signer_name_is_written_lowercase_and_uncompressed() -> None:
    key = Sig0Key.generate("Child.TEST.")
    signed_wire = sign(update_wire(), key, now=NOW)
    assert b"\x05child\x04test\x00" in signed_wire[len(update_wire()):]
    verify(parse(signed_wire), [key.key_rdata()], now=NOW, name=CHILD)


def test_a_compressed_signer_name_still_verifies(key: Sig0Key) -> None:
    """RFC 3597 sec. 4: a receiver decompresses the SIG signer; the signature covers the
    uncompressed name."""
    wire = update_wire()
    signed_wire = sign(wire, key, now=NOW)
    plain = b"\x05child\x04test\x00"
    target = wire.index(b"\x05child\xc0")  # child.test. in the update section, compressed
    rdata_start = len(wire) + 11
    fixed_end = rdata_start + 18
    assert signed_wire[fixed_end:fixed_end + len(plain)] == plain
    pointer = struct.pack("!H", 0xC000 | target)
    rdata = signed_wire[rdata_start:fixed_end] + pointer + signed_wire[fixed_end + len(plain):]
    compressed = signed_wire[:rdata_start - 2] + struct.pack("!H", len(rdata)) + rdata
    signed = parse(compressed)
    assert signed.signer == CHILD
    verify(signed, [key.key_rdata()], now=NOW, name=CHILD)


def test_an_hsm_style_signer_object_signs() -> None:
    """Anything with name, algorithm, key_tag and sign_data() signs (an HSM or KMS key)."""
    inner = Sig0Key.generate(CHILD)

    class Remote:
        name = CHILD
        algorithm = Algorithm.ECDSAP256SHA256
        key_tag = inner.key_tag
        calls = 0

        def sign_data(self, data: bytes) -> bytes:
            Remote.calls += 1
            return inner.sign_data(data)

    signed = parse(sign(update_wire(), Remote(), now=NOW))
    verify(signed, [inner.key_rdata()], now=NOW, name=CHILD)
    assert Remote.calls == 1


@pytest.mark.parametrize("algorithm", [Algorithm.RSASHA256, Algorithm.RSASHA512])
def test_rsa_sig0_verifies(algorithm: Algorithm) -> None:
    """RSA is accepted on receipt (an older nsupdate key), never generated here."""
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    dnspython_key = get_algorithm_cls(algorithm)(private)
    public = dnspython_key.public_key().to_dnskey()
    key_rr = KEY(dns.rdataclass.IN, dns.rdatatype.KEY, HOST_KEY_FLAGS, 3, algorithm, public.key)

    class RsaSigner:
        name = CHILD
        key_tag = key_tag_of(key_rr)

        def __init__(self) -> None:
            self.algorithm = algorithm

        def sign_data(self, data: bytes) -> bytes:
            return dnspython_key.sign(data)

    signed = parse(sign(update_wire(), RsaSigner(), now=NOW))
    verify(signed, [key_rr], now=NOW, name=CHILD)
    with pytest.raises(ValueError, match="SIG\\(0\\) key must be one of"):
        Sig0Key.from_private(CHILD, private)


def test_weak_algorithms_are_no_keys() -> None:
    """RSASHA1 verifies in dnspython, but RFC 8624 says not to trust it: BADKEY."""
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    sha1 = get_algorithm_cls(Algorithm.RSASHA1)(private)
    key_rr = KEY(dns.rdataclass.IN, dns.rdatatype.KEY, HOST_KEY_FLAGS, 3, Algorithm.RSASHA1,
                 sha1.public_key().to_dnskey().key)

    class Sha1Signer:
        name = CHILD
        algorithm = Algorithm.RSASHA1
        key_tag = key_tag_of(key_rr)

        def sign_data(self, data: bytes) -> bytes:
            return sha1.sign(data)

    signed = parse(sign(update_wire(), Sha1Signer(), now=NOW))
    with pytest.raises(Sig0Error, match="BADKEY"):
        verify(signed, [key_rr], now=NOW, name=CHILD)


# -- tampering ----------------------------------------------------------------------------


@pytest.mark.parametrize("flip", [0x01, 0x80])
def test_changing_any_byte_fails(key: Sig0Key, flip: int) -> None:
    signed_wire = sign(update_wire(), key, now=NOW)
    verify(parse(signed_wire), [key.key_rdata()], now=NOW, name=CHILD)
    outcomes: dict[str, int] = {}
    for i in range(len(signed_wire)):
        tampered = bytearray(signed_wire)
        tampered[i] ^= flip
        with pytest.raises(Sig0Error) as excinfo:
            verify(parse(bytes(tampered)), [key.key_rdata()], now=NOW, name=CHILD)
        outcomes[excinfo.value.reason] = outcomes.get(excinfo.value.reason, 0) + 1
    # Most flips hit signed content or the signature itself.
    assert outcomes.get("BADSIG", 0) > len(signed_wire) // 2, outcomes


def test_truncation_and_trailing_junk_fail(key: Sig0Key) -> None:
    signed_wire = sign(update_wire(), key, now=NOW)
    for cut in range(len(signed_wire)):
        with pytest.raises(Sig0Error) as excinfo:
            verify(parse(signed_wire[:cut]), [key.key_rdata()], now=NOW, name=CHILD)
        assert excinfo.value.reason in ("FORMERR", "UNSIGNED", "BADSIG"), cut
    with pytest.raises(Sig0Error, match="trailing junk") as excinfo:
        parse(signed_wire + b"\x00")
    assert reason(excinfo) == ("FORMERR", dns.rcode.FORMERR)


def test_signature_changed_to_another_keys_signature_fails(key: Sig0Key) -> None:
    """The SIG of one message does not carry over to another (same key, other content)."""
    a = sign(update_wire(), key, now=NOW)
    other = dns.update.UpdateMessage("test.", id=4242)
    other.replace("evil.test.", 3600, "DS", DS)
    b_wire = other.to_wire()
    spliced = b_wire[:10] + a[10:12] + b_wire[12:] + a[len(update_wire()):]
    with pytest.raises(Sig0Error) as excinfo:
        verify(parse(spliced), [key.key_rdata()], now=NOW, name=CHILD)
    assert reason(excinfo) == ("BADSIG", dns.rcode.NOTAUTH)


# -- keys ---------------------------------------------------------------------------------


def test_wrong_key_is_badkey(key: Sig0Key) -> None:
    signed = parse(sign(update_wire(), key, now=NOW))
    with pytest.raises(Sig0Error) as excinfo:
        verify(signed, [other_key(key).key_rdata()], now=NOW, name=CHILD)
    assert reason(excinfo) == ("BADKEY", dns.rcode.NOTAUTH)
    assert str(key.key_tag) in str(excinfo.value)
    with pytest.raises(Sig0Error, match="BADKEY"):
        verify(signed, [], now=NOW, name=CHILD)


def test_right_key_under_another_name_is_badkey(key: Sig0Key) -> None:
    signed = parse(sign(update_wire(), key, now=NOW))
    with pytest.raises(Sig0Error, match=r"BADKEY: signed by child\.test\., but the keys"):
        verify(signed, [key.key_rdata()], now=NOW, name=dns.name.from_text("other.test."))
    rrset = dns.rrset.from_rdata("other.test.", 3600, key.key_rdata())
    with pytest.raises(Sig0Error, match="BADKEY"):
        verify(signed, rrset, now=NOW)  # the RRset's owner is the key's name
    verify(signed, dns.rrset.from_rdata(CHILD, 3600, key.key_rdata()), now=NOW)


def test_key_with_same_tag_but_other_algorithm_is_badkey() -> None:
    key = Sig0Key.generate(CHILD, Algorithm.ECDSAP256SHA256)
    signed = parse(sign(update_wire(), key, now=NOW))
    rd = key.key_rdata()
    # Same key data labelled P-384: a different algorithm, so not a candidate.
    relabelled = KEY(rd.rdclass, rd.rdtype, rd.flags, rd.protocol,
                     Algorithm.ECDSAP384SHA384, rd.key)
    with pytest.raises(Sig0Error, match="BADKEY"):
        verify(signed, [relabelled], now=NOW, name=CHILD)


def test_no_key_flag_and_wrong_protocol_are_not_keys() -> None:
    """A KEY of type "no key" (flags 0xC000) or not protocol 3 cannot authorise, even if
    its tag and algorithm match (constructed here to match the signature's key tag)."""
    key = Sig0Key.generate(CHILD)
    rd = key.key_rdata()
    for flags, protocol in ((rd.flags | 0xC000, 3), (rd.flags, 1)):
        bad = KEY(rd.rdclass, rd.rdtype, flags, protocol, rd.algorithm, rd.key)

        class Signer:
            name = CHILD
            algorithm = key.algorithm
            key_tag = key_tag_of(bad)

            def sign_data(self, data: bytes) -> bytes:
                return key.sign_data(data)

        signed = parse(sign(update_wire(), Signer(), now=NOW))
        with pytest.raises(Sig0Error, match="BADKEY"):
            verify(signed, [bad], now=NOW, name=CHILD)


def test_garbage_key_data_is_no_key() -> None:
    key = Sig0Key.generate(CHILD)
    signed = parse(sign(update_wire(), key, now=NOW))
    rd = key.key_rdata()
    garbage = KEY(rd.rdclass, rd.rdtype, rd.flags, rd.protocol, rd.algorithm, b"\x01" * 64)
    with pytest.raises(Sig0Error, match="BADKEY"):
        verify(signed, [garbage], now=NOW, name=CHILD)


def test_key_rdata_and_tag() -> None:
    key = Sig0Key.generate(CHILD)
    rd = key.key_rdata()
    assert (rd.flags, rd.protocol, rd.algorithm) == (512, 3, Algorithm.ECDSAP256SHA256)
    assert rd.rdtype == dns.rdatatype.KEY
    as_dnskey = dns.rdata.from_text("IN", "DNSKEY", rd.to_text())
    assert key.key_tag == dns.dnssec.key_id(as_dnskey)  # type: ignore[arg-type]
    assert Sig0Key.from_private(CHILD, key.private) == key


def test_key_construction_is_checked() -> None:
    with pytest.raises(ValueError, match="not supported"):
        Sig0Key.generate(CHILD, Algorithm.RSASHA256)
    p384 = ec.generate_private_key(ec.SECP384R1())
    with pytest.raises(ValueError, match="is ECDSAP384SHA384, not ECDSAP256SHA256"):
        Sig0Key(CHILD, Algorithm.ECDSAP256SHA256, p384)
    with pytest.raises(ValueError, match="12-octet header"):
        sign(b"\x00" * 11, Sig0Key.generate(CHILD), now=NOW)


# -- time ---------------------------------------------------------------------------------


def test_time_window_with_fudge(key: Sig0Key) -> None:
    """Signed at NOW: valid NOW-30..NOW+300; the receiver's fudge widens both ends."""
    signed = parse(sign(update_wire(), key, now=NOW, validity=300, skew=30))
    keys = [key.key_rdata()]
    start, end = NOW - 30, NOW + 300
    for ok in (start - DEFAULT_FUDGE, NOW, end + DEFAULT_FUDGE):
        verify(signed, keys, now=ok, name=CHILD)
    for late_or_early, words in ((start - DEFAULT_FUDGE - 1, "in the future"),
                                 (end + DEFAULT_FUDGE + 1, "expired")):
        with pytest.raises(Sig0Error, match=words) as excinfo:
            verify(signed, keys, now=late_or_early, name=CHILD)
        assert reason(excinfo) == ("BADTIME", dns.rcode.NOTAUTH)
    verify(signed, keys, now=start, name=CHILD, fudge=0)
    verify(signed, keys, now=end, name=CHILD, fudge=0)
    for outside in (start - 1, end + 1):
        with pytest.raises(Sig0Error, match="BADTIME"):
            verify(signed, keys, now=outside, name=CHILD, fudge=0)


def test_default_window_is_backdated_like_nsupdate(key: Sig0Key) -> None:
    signed = parse(sign(update_wire(), key, now=NOW))
    assert signed.sig is not None
    assert (signed.sig.inception, signed.sig.expiration) == (NOW - 300, NOW + 300)
    verify(signed, [key.key_rdata()], now=NOW - 300, name=CHILD, fudge=0)


def test_oversized_message_is_refused(key: Sig0Key) -> None:
    big = dns.message.make_query("child.test.", "TXT")
    wire = big.to_wire() + b"\x00" * (0xFFFF - len(big.to_wire()) - 20)
    with pytest.raises(ValueError, match="exceed 65535"):
        sign(wire, key, now=NOW)


def test_bad_signature_is_reported_before_bad_time(key: Sig0Key) -> None:
    """BADTIME is said only of an authentic message (an attacker learns nothing)."""
    signed_wire = bytearray(sign(update_wire(), key, now=NOW))
    signed_wire[-1] ^= 1
    with pytest.raises(Sig0Error, match="BADSIG"):
        verify(parse(bytes(signed_wire)), [key.key_rdata()], now=NOW + 10**6, name=CHILD)


# -- parsing ------------------------------------------------------------------------------


def test_unsigned_message_parses_and_is_refused() -> None:
    signed = parse(update_wire())
    assert signed.sig is None and signed.signer is None and signed.key_tag is None
    assert isinstance(signed.message, dns.update.UpdateMessage)
    with pytest.raises(Sig0Error) as excinfo:
        verify(signed, [Sig0Key.generate(CHILD).key_rdata()], now=NOW)
    assert reason(excinfo) == ("UNSIGNED", dns.rcode.REFUSED)


def test_dnspython_alone_rejects_what_parse_reads() -> None:
    """Why this module exists: dnspython cannot read a SIG(0)-signed message."""
    signed_wire = sign(update_wire(), Sig0Key.generate(CHILD), now=NOW)
    with pytest.raises(Exception):  # noqa: B017 — whatever dnspython raises
        dns.message.from_wire(signed_wire)
    assert parse(signed_wire).sig is not None


def test_sig0_that_is_not_last_is_formerr() -> None:
    key = Sig0Key.generate(CHILD)
    signed_wire = sign(update_wire(), key, now=NOW)
    # Append another additional RR (an A record) after the SIG(0).
    extra = b"\x00" + struct.pack("!HHIH", 1, 1, 0, 4) + b"\x7f\x00\x00\x01"
    arcount = struct.unpack_from("!H", signed_wire, 10)[0]
    moved = signed_wire[:10] + struct.pack("!H", arcount + 1) + signed_wire[12:] + extra
    with pytest.raises(Sig0Error) as excinfo:
        parse(moved)
    assert reason(excinfo) == ("FORMERR", dns.rcode.FORMERR)


@pytest.mark.parametrize(("start", "end", "value", "words"), [
    (0, 1, b"\x01a\x00", "owner '.'"),             # owner a. instead of the root
    (3, 5, struct.pack("!H", 1), "class ANY"),      # class IN
    (5, 9, struct.pack("!I", 60), "TTL 0"),         # TTL 60
])
def test_malformed_sig0_rr_is_formerr(start: int, end: int, value: bytes, words: str) -> None:
    key = Sig0Key.generate(CHILD)
    wire = update_wire()
    signed_wire = sign(wire, key, now=NOW)
    rr = signed_wire[len(wire):]
    with pytest.raises(Sig0Error, match=words):
        parse(signed_wire[:len(wire)] + rr[:start] + value + rr[end:])


def test_sig_covering_a_type_is_not_sig0() -> None:
    key = Sig0Key.generate(CHILD)
    wire = update_wire()
    signed_wire = bytearray(sign(wire, key, now=NOW))
    rdata_start = len(wire) + 11
    signed_wire[rdata_start:rdata_start + 2] = struct.pack("!H", 1)  # type covered A
    with pytest.raises(Sig0Error, match="cover type 0"):
        parse(bytes(signed_wire))


@pytest.mark.parametrize("wire", [b"", b"\x00" * 11, b"\x00" * 12 + b"\x01",
                                  bytes.fromhex("0000 2800 0001 0000 0000 0000 3f"),
                                  bytes.fromhex("0000 2800 0001 0000 0000 0000 c0"),
                                  bytes.fromhex("0000 2800 0000 0000 0000 0001 00 0018")])
def test_short_and_broken_messages_are_formerr(wire: bytes) -> None:
    with pytest.raises(Sig0Error) as excinfo:
        parse(wire)
    assert reason(excinfo) == ("FORMERR", dns.rcode.FORMERR)


# -- fuzzing ------------------------------------------------------------------------------

_KEY = Sig0Key.generate(CHILD)
_SIGNED = sign(update_wire(), _KEY, now=NOW)
_KEYS = [_KEY.key_rdata()]


def _parse_and_verify(wire: bytes) -> None:
    try:
        signed = parse(wire)
    except Sig0Error as exc:
        assert exc.rcode == dns.rcode.FORMERR
        return
    with contextlib.suppress(Sig0Error):
        verify(signed, _KEYS, now=NOW, name=CHILD)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=600))
def test_fuzz_parse_of_arbitrary_bytes(wire: bytes) -> None:
    _parse_and_verify(wire)


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.integers(0, len(_SIGNED) - 1), st.integers(0, 255)),
                min_size=1, max_size=8),
       st.integers(0, len(_SIGNED)), st.binary(max_size=40))
def test_fuzz_mutated_signed_message(edits: list[tuple[int, int]], cut: int,
                                     tail: bytes) -> None:
    """Random edits of a real signed UPDATE: only Sig0Error, and never accepted unless
    the edits changed nothing."""
    mutated = bytearray(_SIGNED)
    for pos, value in edits:
        mutated[pos] = value
    wire = bytes(mutated[:cut]) + tail
    _parse_and_verify(wire)
    # (Only the signer name's case may change unnoticed: it names the same key.)
    if wire.lower() != _SIGNED.lower():
        with pytest.raises(Sig0Error):
            verify(parse(wire), _KEYS, now=NOW, name=CHILD)
