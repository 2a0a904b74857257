"""providers/parent and core/dsync: DSYNC discovery against an in-test authoritative
server, SIG(0)-signed UPDATEs and KeyState inquiries against an in-test receiver."""

from __future__ import annotations

import asyncio
import contextlib
import struct
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

import dns.edns
import dns.message
import dns.name
import dns.rcode
import dns.rdata
import dns.update
import pytest
from dns.rdtypes.ANY.DSYNC import DSYNC
from fake_parent import Receiver, start_auth
from hypothesis import given, settings
from hypothesis import strategies as st

from core import keystate
from core.dsync import SCHEME_UPDATE, dsync_names, update_endpoint
from core.keystate import KeyState, KeyStateCode, ParentKeyState
from core.sig0 import Sig0Error, Sig0Key, parse, sign, verify
from providers.parent import (
    ParentError,
    ParentUnreachable,
    ParentUpdateRefused,
    discover,
    find_parent_zone,
    query_key_state,
    send_update,
)
from providers.parent.update import interpret

T = TypeVar("T")
N = dns.name.from_text
CHILD = N("child.test.")
RECEIVER = N("updater.test.")

PARENT_ZONE = """\
@ 3600 IN SOA ns1.test. hostmaster.test. 1 3600 600 86400 300
@ 3600 IN NS ns1.test.
ns1 3600 IN A 127.0.0.1
updater 3600 IN A 127.0.0.1
updater 3600 IN AAAA ::1
child 3600 IN NS ns1.child.test.
other 3600 IN NS ns1.other.test.
deep.ent 3600 IN NS ns1.deep.ent.test.
"""


def run(scenario: Callable[[], Awaitable[T]]) -> T:
    return asyncio.run(scenario())


async def _discover(extra: str, child: dns.name.Name = CHILD) -> object:
    server, transport = await start_auth(PARENT_ZONE + extra, "test.")
    try:
        return await discover(child, [server])
    finally:
        transport.close()


# -- core/dsync ---------------------------------------------------------------------------


def test_dsync_names_child_specific_first() -> None:
    assert dsync_names(CHILD, N("test.")) == [N("child._dsync.test."), N("_dsync.test.")]
    assert dsync_names(N("a.b.example.co.uk."), N("co.uk.")) == [
        N("a.b.example._dsync.co.uk."), N("_dsync.co.uk.")]
    with pytest.raises(ValueError, match="not below"):
        dsync_names(N("test."), N("test."))
    with pytest.raises(ValueError, match="not below"):
        dsync_names(N("child.example."), N("test."))


def _dsync(text: str) -> DSYNC:
    rd = dns.rdata.from_text("IN", "DSYNC", text)
    assert isinstance(rd, DSYNC)
    return rd


def test_update_endpoint_choice() -> None:
    owner = N("_dsync.test.")
    notify = _dsync("CDS 1 5300 scanner.test.")
    assert update_endpoint(owner, [notify]) is None
    closed = _dsync(f"ANY {SCHEME_UPDATE} 0 updater.test.")
    assert update_endpoint(owner, [notify, closed]) is None  # port 0: not offered
    ds = _dsync(f"DS {SCHEME_UPDATE} 5400 ds-updater.test.")
    any_ = _dsync(f"ANY {SCHEME_UPDATE} 5399 updater.test.")
    chosen = update_endpoint(owner, [notify, ds, any_])
    assert chosen is not None
    assert (chosen.target, chosen.port, chosen.scheme) == (RECEIVER, 5399, 2)
    assert str(chosen) == "updater.test.:5399 (DSYNC ANY scheme 2 at _dsync.test.)"
    only_ds = update_endpoint(owner, [ds])
    assert only_ds is not None and only_ds.port == 5400


# -- discovery ----------------------------------------------------------------------------


def test_default_dsync_at_the_parent() -> None:
    found = run(lambda: _discover("_dsync 3600 IN DSYNC ANY 2 5399 updater.test.\n"))
    assert found.parent == N("test.")  # type: ignore[attr-defined]
    endpoint = found.endpoint  # type: ignore[attr-defined]
    assert endpoint.owner == N("_dsync.test.") and endpoint.port == 5399
    assert found.addresses == ("127.0.0.1", "::1")  # type: ignore[attr-defined]
    assert found.looked_at == (  # type: ignore[attr-defined]
        ("child._dsync.test.", "no DSYNC"), ("_dsync.test.", "ANY 2 5399 updater.test."))
    assert found.channel == "dsync UPDATE to updater.test. port 5399"  # type: ignore[attr-defined]


def test_child_specific_dsync_wins() -> None:
    found = run(lambda: _discover(
        "_dsync 3600 IN DSYNC ANY 2 5399 updater.test.\n"
        "child._dsync 3600 IN DSYNC ANY 2 6000 special.test.\n"
        "special 3600 IN A 127.0.0.2\n"))
    endpoint = found.endpoint  # type: ignore[attr-defined]
    assert (endpoint.owner, endpoint.target, endpoint.port) == (
        N("child._dsync.test."), N("special.test."), 6000)
    assert found.addresses == ("127.0.0.2",)  # type: ignore[attr-defined]


def test_wildcard_dsync_answers_the_child_specific_name() -> None:
    found = run(lambda: _discover("*._dsync 3600 IN DSYNC ANY 2 5399 updater.test.\n"))
    endpoint = found.endpoint  # type: ignore[attr-defined]
    assert endpoint.owner == N("child._dsync.test.") and endpoint.port == 5399


def test_child_specific_rrset_without_update_means_cds_scanning() -> None:
    """A child-specific DSYNC RRset overrides the default even when it offers no UPDATE."""
    found = run(lambda: _discover(
        "_dsync 3600 IN DSYNC ANY 2 5399 updater.test.\n"
        "child._dsync 3600 IN DSYNC CDS 1 5300 scanner.test.\n"))
    assert found.endpoint is None  # type: ignore[attr-defined]
    assert found.channel.startswith("cds-scan")  # type: ignore[attr-defined]


def test_no_dsync_at_all() -> None:
    found = run(lambda: _discover(""))
    assert found.endpoint is None and found.addresses == ()  # type: ignore[attr-defined]
    assert [name for name, _ in found.looked_at] == [  # type: ignore[attr-defined]
        "child._dsync.test.", "_dsync.test."]


def test_target_without_address_is_an_error() -> None:
    with pytest.raises(ParentError, match=r"nowhere\.invalid\. has no address"):
        run(lambda: _discover("_dsync 3600 IN DSYNC ANY 2 5399 nowhere.invalid.\n"))


def test_parent_zone_through_an_empty_non_terminal() -> None:
    async def scenario() -> dns.name.Name:
        server, transport = await start_auth(PARENT_ZONE, "test.")
        try:
            return await find_parent_zone(N("deep.ent.test."), [server])
        finally:
            transport.close()

    assert run(scenario) == N("test.")


def test_nameservers_that_refer_further_are_misconfigured() -> None:
    async def scenario() -> dns.name.Name:
        server, transport = await start_auth(PARENT_ZONE, "test.")
        try:
            return await find_parent_zone(N("x.other.test."), [server])
        finally:
            transport.close()

    with pytest.raises(ParentError, match=r"give no SOA above x\.other\.test\."):
        run(scenario)


def test_unreachable_parent_nameservers() -> None:
    with pytest.raises(ParentUnreachable, match="no parent nameserver answered"):
        run(lambda: find_parent_zone(CHILD, ["127.0.0.1:9"], timeout=0.2))


# -- UPDATE -------------------------------------------------------------------------------

KEY = Sig0Key.generate(CHILD)
RECEIVER_KEY = Sig0Key.generate(RECEIVER)


def _update() -> dns.update.UpdateMessage:
    update = dns.update.UpdateMessage("test.")
    update.replace("child.test.", 3600, "DS", "12345 13 2 " + "ab" * 32)
    return update


def _reply(request: bytes, rcode: int = dns.rcode.NOERROR, *, ede: tuple[int, str] | None = None,
           signed_by: Sig0Key | None = None, opt: KeyState | None = None,
           message_id: int | None = None) -> bytes:
    query = parse(request).message
    response = dns.message.make_response(query)
    if message_id is not None:
        response.id = message_id
    options: list[dns.edns.Option] = []
    if ede is not None:
        options.append(dns.edns.EDEOption(ede[0], ede[1]))
    if opt is not None:
        options.append(opt.to_option())
    if options or rcode > 15:
        response.use_edns(0, options=options)
    response.set_rcode(dns.rcode.Rcode.make(rcode))
    wire = response.to_wire()
    if signed_by is not None:
        wire = sign(wire, signed_by, now=_now(), request=request)
    return wire


def _now() -> int:
    return int(time.time())


async def _send(handle: Callable[[bytes], Awaitable[bytes | None]], *,
                receiver_keys: bool = False, addresses: list[str] | None = None,
                ) -> tuple[object, Receiver]:
    receiver = await Receiver(handle).start()
    try:
        answer = await send_update(
            _update(), KEY, addresses or ["127.0.0.1"], receiver.port,
            receiver_keys=[RECEIVER_KEY.key_rdata()] if receiver_keys else (),
            receiver=RECEIVER if receiver_keys else None, timeout=3)
        return answer, receiver
    finally:
        await receiver.stop()


def test_update_accepted_and_what_was_sent_verifies() -> None:
    async def handle(request: bytes) -> bytes:
        signed = parse(request)
        verify(signed, [KEY.key_rdata()], now=_now(), name=CHILD)  # as a receiver would
        return _reply(request, signed_by=RECEIVER_KEY)

    answer, receiver = run(lambda: _send(handle, receiver_keys=True))
    assert answer.receiver_verified is True  # type: ignore[attr-defined]
    assert answer.ede == ()  # type: ignore[attr-defined]
    [request] = receiver.seen
    message = parse(request).message
    assert isinstance(message, dns.update.UpdateMessage)
    assert message.update[0].name == CHILD


def test_answer_not_signed_by_the_receiver_is_not_believed() -> None:
    impostor = Sig0Key.generate(RECEIVER)

    async def handle(request: bytes) -> bytes:
        return _reply(request, signed_by=impostor)

    with pytest.raises(ParentUnreachable, match="not signed by the receiver's published KEY"):
        run(lambda: _send(handle, receiver_keys=True))

    async def unsigned(request: bytes) -> bytes:
        return _reply(request, dns.rcode.REFUSED, ede=(18, "go away"))

    with pytest.raises(ParentUnreachable,
                       match=r"its answer \(REFUSED; EDE 18 'go away'\) is not signed.*UNSIGNED"):
        run(lambda: _send(unsigned, receiver_keys=True))


def test_a_response_signature_is_bound_to_its_request() -> None:
    """RFC 2931 sec. 3.1: the receiver's SIG(0) covers our request, so an answer signed
    for another request does not verify."""
    request = sign(_update().to_wire(), KEY, now=_now())
    other = sign(_update().to_wire(), KEY, now=_now())
    response = parse(_reply(request, signed_by=RECEIVER_KEY))
    verify(response, [RECEIVER_KEY.key_rdata()], now=_now(), request=request)
    with pytest.raises(Sig0Error, match="BADSIG"):
        verify(response, [RECEIVER_KEY.key_rdata()], now=_now(), request=other)


@pytest.mark.parametrize(("rcode", "ede", "reason", "words"), [
    (dns.rcode.REFUSED, (18, "child.test. may not change other.test."), "REFUSED",
     "REFUSED; EDE 18 'child.test. may not change other.test.': the parent's policy"),
    (dns.rcode.NOTAUTH, None, "NOTAUTH", "NOTAUTH: the parent does not accept"),
    (16, None, "BADSIG", "BADSIG: the parent could not verify our SIG(0)"),
    (17, (9, "no KEY for child.test."), "BADKEY",
     "BADKEY; EDE 9 'no KEY for child.test.': the parent does not know our SIG(0) key"),
    (18, None, "BADTIME", "check this host's clock"),
    (dns.rcode.SERVFAIL, None, "SERVFAIL", "answered SERVFAIL"),
])
def test_refusals_are_explained(rcode: int, ede: tuple[int, str] | None, reason: str,
                                words: str) -> None:
    async def handle(request: bytes) -> bytes:
        return _reply(request, rcode, ede=ede)

    with pytest.raises(ParentUpdateRefused) as excinfo:
        run(lambda: _send(handle))
    assert excinfo.value.reason == reason
    assert words in str(excinfo.value)
    assert excinfo.value.ede == ((ede,) if ede else ())
    assert excinfo.value.exit_code == 1


@pytest.mark.parametrize(("reply", "words"), [
    (lambda req: None, "closed the connection without a complete answer"),
    (lambda req: b"\x00\x01garbage", "unreadable answer"),
    (lambda req: _reply(req, message_id=(int.from_bytes(req[:2], "big") + 1) % 65536),
     "does not match our UPDATE"),
])
def test_garbled_answers_are_unreachable(reply: Callable[[bytes], bytes | None],
                                         words: str) -> None:
    async def handle(request: bytes) -> bytes | None:
        return reply(request)

    with pytest.raises(ParentUnreachable, match=words):
        run(lambda: _send(handle))


def test_silent_receiver_times_out() -> None:
    async def handle(request: bytes) -> bytes | None:
        await asyncio.sleep(5)
        return None

    async def scenario() -> None:
        receiver = await Receiver(handle).start()
        try:
            await send_update(_update(), KEY, ["127.0.0.1"], receiver.port, timeout=0.3)
        finally:
            await receiver.stop()

    with pytest.raises(ParentUnreachable, match=r"no answer within 0\.3s"):
        run(scenario)


def test_next_address_when_one_is_unreachable() -> None:
    async def handle(request: bytes) -> bytes:
        return _reply(request)

    async def scenario() -> tuple[object, Receiver]:
        receiver = await Receiver(handle).start()
        try:
            # ::1 on the same port: nothing listens there (the receiver is IPv4 only).
            answer = await send_update(_update(), KEY, ["::1", "127.0.0.1"], receiver.port,
                                       timeout=3)
            return answer, receiver
        finally:
            await receiver.stop()

    answer, receiver = run(scenario)
    assert answer.server.startswith("127.0.0.1:")  # type: ignore[attr-defined]
    assert len(receiver.seen) == 1


def test_nothing_listening() -> None:
    async def scenario() -> None:
        receiver = await Receiver(lambda r: asyncio.sleep(0, None)).start()
        port = receiver.port
        await receiver.stop()
        await send_update(_update(), KEY, ["127.0.0.1"], port, timeout=2)

    with pytest.raises(ParentUnreachable, match=r"UPDATE receiver 127\.0\.0\.1:"):
        run(scenario)


# -- KeyState -----------------------------------------------------------------------------


async def _ask(handle: Callable[[bytes], Awaitable[bytes | None]],
               receiver_keys: bool = False) -> object:
    receiver = await Receiver(handle).start()
    try:
        return await query_key_state(
            CHILD, KEY, "127.0.0.1", receiver.port, timeout=3,
            receiver_keys=[RECEIVER_KEY.key_rdata()] if receiver_keys else (),
            receiver=RECEIVER if receiver_keys else None)
    finally:
        await receiver.stop()


@pytest.mark.parametrize(("code", "view"), [
    (KeyStateCode.KEY_TRUSTED, ParentKeyState.TRUSTED),
    (KeyStateCode.BOOTSTRAP_AUTO_ONGOING, ParentKeyState.BOOTSTRAPPING),
    (KeyStateCode.KEY_UNKNOWN, ParentKeyState.UNKNOWN),
    (KeyStateCode.KEY_REFUSED, ParentKeyState.REFUSED),
])
def test_key_state_inquiry(code: KeyStateCode, view: ParentKeyState) -> None:
    asked: list[KeyState | None] = []

    async def handle(request: bytes) -> bytes:
        signed = parse(request)
        verify(signed, [KEY.key_rdata()], now=_now(), name=CHILD)  # the query is signed
        asked.append(keystate.find(signed.message))
        return _reply(request, opt=KeyState(KEY.key_tag, code, 0, "why"),
                      signed_by=RECEIVER_KEY)

    answer = run(lambda: _ask(handle, receiver_keys=True))
    assert answer.view == view  # type: ignore[attr-defined]
    assert f"key {KEY.key_tag}: {code.name} (why)" in answer.detail  # type: ignore[attr-defined]
    assert asked == [KeyState(KEY.key_tag, KeyStateCode.INQUIRY_KEY)]


def test_key_state_from_a_receiver_without_the_option() -> None:
    async def handle(request: bytes) -> bytes:
        return _reply(request, dns.rcode.REFUSED)

    answer = run(lambda: _ask(handle))
    assert answer.view == ParentKeyState.UNKNOWN  # type: ignore[attr-defined]
    assert "without a KeyState option" in answer.detail  # type: ignore[attr-defined]


def test_key_state_about_another_key_or_malformed() -> None:
    async def other(request: bytes) -> bytes:
        return _reply(request, opt=KeyState((KEY.key_tag + 1) % 65536, 4))

    with pytest.raises(ParentUnreachable, match="we asked about"):
        run(lambda: _ask(other))

    async def short(request: bytes) -> bytes:
        wire = _reply(request, opt=KeyState(KEY.key_tag, 4))
        # Cut the option to 2 octets of data: OPTION-LENGTH 4 -> 2 and drop two octets.
        i = wire.index(struct.pack("!HH", keystate.KEYSTATE_OPTION_CODE, 4))
        cut = wire[:i] + struct.pack("!HH", keystate.KEYSTATE_OPTION_CODE, 2) + wire[i + 4:i + 6]
        rdlen_at = i - 2
        rdlen = struct.unpack_from("!H", wire, rdlen_at)[0] - 2
        return cut[:rdlen_at] + struct.pack("!H", rdlen) + cut[rdlen_at + 2:]

    with pytest.raises(ParentUnreachable, match="at least 4 expected"):
        run(lambda: _ask(short))


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300), st.booleans())
def test_fuzz_interpret_any_answer(answer: bytes, with_keys: bool) -> None:
    """Whatever a receiver sends back, the child gets a ParentError, never a crash."""
    request = sign(_update().to_wire(), KEY, now=1_790_000_000)
    keys = [RECEIVER_KEY.key_rdata()] if with_keys else []
    with contextlib.suppress(ParentError):
        interpret("127.0.0.1:53", request, answer, receiver_keys=keys, receiver=RECEIVER,
                  now=1_790_000_000)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 400), st.integers(0, 255)), max_size=6))
def test_fuzz_interpret_mutated_answers(edits: list[tuple[int, int]]) -> None:
    """A receiver-signed REFUSED, randomly edited: a ParentError always, and the refusal
    itself only when the edits changed nothing."""
    now = _now()
    request = sign(_update().to_wire(), KEY, now=now)
    original = _reply(request, dns.rcode.REFUSED, ede=(18, "no"), signed_by=RECEIVER_KEY)
    answer = bytearray(original)
    for pos, value in edits:
        answer[pos % len(answer)] = value
    with pytest.raises(ParentError) as excinfo:
        interpret("127.0.0.1:53", request, bytes(answer),
                  receiver_keys=[RECEIVER_KEY.key_rdata()], receiver=RECEIVER, now=now)
    if bytes(answer) == original:
        assert isinstance(excinfo.value, ParentUpdateRefused)
