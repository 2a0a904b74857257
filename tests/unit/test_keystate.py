"""core/keystate.py: the KeyState EDNS(0) option (draft-berra-dnsop-keystate)."""

from __future__ import annotations

import struct

import dns.edns
import dns.message
import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.keystate import (
    KEYSTATE_OPTION_CODE,
    KeyState,
    KeyStateCode,
    KeyStateError,
    ParentKeyState,
    add_option,
    find,
    inquiry,
    parent_view,
)


def test_inquiry_wire_layout() -> None:
    """KEY-ID (16 bits), KEY-STATE 2 (8 bits), KEY-DATA 0 (8 bits), no text; code 65002."""
    query = dns.message.make_query("child.test.", "ANY")
    query.use_edns(0, options=[inquiry(0xBEEF)])
    wire = query.to_wire()
    assert struct.pack("!HH", 65002, 4) + b"\xbe\xef\x02\x00" in wire
    assert KEYSTATE_OPTION_CODE == 65002


def test_answer_round_trip_through_the_wire() -> None:
    query = dns.message.make_query("child.test.", "ANY")
    add_option(query, KeyState(4711, KeyStateCode.INQUIRY_KEY))
    received = dns.message.from_wire(query.to_wire())
    asked = find(received)
    assert asked == KeyState(4711, KeyStateCode.INQUIRY_KEY)

    response = dns.message.make_response(received)
    add_option(response, KeyState(4711, KeyStateCode.BOOTSTRAP_AUTO_ONGOING, 3,
                                  "check 1 of 3 done – next in 1s"))
    answer = find(dns.message.from_wire(response.to_wire()))
    assert answer is not None
    assert answer.key_id == 4711 and answer.key_data == 3
    assert answer.extra_text == "check 1 of 3 done – next in 1s"
    assert parent_view(answer) == ParentKeyState.BOOTSTRAPPING
    assert answer.describe() == "key 4711: BOOTSTRAP_AUTO_ONGOING (check 1 of 3 done – next in 1s)"


def test_add_option_replaces_an_earlier_keystate_and_keeps_others() -> None:
    message = dns.message.make_query("child.test.", "ANY")
    cookie = dns.edns.GenericOption(dns.edns.OptionType.COOKIE, b"12345678")
    message.use_edns(0, options=[cookie, inquiry(1)])
    add_option(message, KeyState(1, KeyStateCode.KEY_TRUSTED))
    codes = [o.otype for o in message.options]
    assert codes == [dns.edns.OptionType.COOKIE, KEYSTATE_OPTION_CODE]
    assert find(message) == KeyState(1, KeyStateCode.KEY_TRUSTED)


def test_no_option_and_no_edns() -> None:
    assert find(dns.message.make_query("child.test.", "ANY")) is None
    assert find(dns.message.make_query("child.test.", "ANY", use_edns=0)) is None


@pytest.mark.parametrize(("code", "view"), [
    (KeyStateCode.KEY_TRUSTED, ParentKeyState.TRUSTED),
    (KeyStateCode.KEY_UNKNOWN, ParentKeyState.UNKNOWN),
    (KeyStateCode.BOOTSTRAP_AUTO_ONGOING, ParentKeyState.BOOTSTRAPPING),
    (KeyStateCode.KEY_INVALID, ParentKeyState.REFUSED),
    (KeyStateCode.KEY_REFUSED, ParentKeyState.REFUSED),
    (KeyStateCode.KEY_VALIDATION_FAIL, ParentKeyState.REFUSED),
    (KeyStateCode.BOOTSTRAP_MANUAL_REQUIRED, ParentKeyState.REFUSED),
    (KeyStateCode.INQUIRY_KEY, ParentKeyState.UNKNOWN),  # our own question echoed back
    (3, ParentKeyState.UNKNOWN),  # unassigned
    (200, ParentKeyState.UNKNOWN),  # private use
])
def test_parent_view(code: int, view: ParentKeyState) -> None:
    assert parent_view(KeyState(1, code)) == view


def test_malformed_option() -> None:
    message = dns.message.make_query("child.test.", "ANY")
    short = dns.edns.GenericOption(dns.edns.OptionType.make(KEYSTATE_OPTION_CODE), b"\x00\x01")
    message.use_edns(0, options=[short])
    with pytest.raises(KeyStateError, match="2 octets; at least 4"):
        find(dns.message.from_wire(message.to_wire()))
    with pytest.raises(KeyStateError):
        KeyState(70000, 2)
    with pytest.raises(KeyStateError):
        KeyState(1, 256)
    assert KeyState.from_data(b"\x00\x01\x04\x00\xff").extra_text == "\ufffd"  # not UTF-8


@given(st.binary(max_size=80))
def test_from_data_never_raises_anything_else(data: bytes) -> None:
    try:
        state = KeyState.from_data(data)
    except KeyStateError:
        assert len(data) < 4
        return
    assert KeyState.from_data(state.to_option().to_wire() or b"").key_id == state.key_id
