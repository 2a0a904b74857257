"""The KeyState EDNS(0) option (draft-berra-dnsop-keystate): ask a parent's UPDATE
receiver what it thinks of a SIG(0) key, and read or write its answer. No I/O.

Layout of the option data (draft-berra-dnsop-keystate-02 sec. 4), after the usual
OPTION-CODE and OPTION-LENGTH:

    KEY-ID      16 bits   key tag of the SIG(0) key asked about
    KEY-STATE    8 bits   a code below
    KEY-DATA     8 bits   meaning depends on KEY-STATE (0 when unused)
    EXTRA-TEXT  the rest  human-readable detail (UTF-8), possibly empty

OPTION-CODE: the draft leaves it "TBD" (no IANA assignment yet). We use 65002, from the
RFC 6891 "Local/Experimental Use" range 65001-65534, because that is the number the
draft's authors' own implementation (tdns) uses, so both interoperate.

The child sends KEY-STATE 2 (key inquiry), normally in a QUERY for ``<child> ANY`` to the
receiver; the receiver answers with one of the 4-10 codes. :func:`parent_view` folds
those into the four states ``status`` shows: unknown, bootstrapping, trusted, refused.
A signed answer is the only one to believe (draft sec. 7): that check is the caller's.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import IntEnum, StrEnum

import dns.edns
import dns.message

KEYSTATE_OPTION_CODE = 65002
"""EDNS option code of KeyState (local/experimental use until IANA assigns one)."""

_FIXED = struct.Struct("!HBB")


class KeyStateCode(IntEnum):
    """KEY-STATE values (draft sec. 6); 128-255 are private use."""

    REQUEST_AUTO_BOOTSTRAP = 0
    REQUEST_MANUAL_BOOTSTRAP = 1
    INQUIRY_KEY = 2
    KEY_TRUSTED = 4
    KEY_UNKNOWN = 5
    KEY_INVALID = 6
    KEY_REFUSED = 7
    KEY_VALIDATION_FAIL = 8
    BOOTSTRAP_AUTO_ONGOING = 9
    BOOTSTRAP_MANUAL_REQUIRED = 10


class ParentKeyState(StrEnum):
    """What the parent thinks of the child's key, as ``status`` shows it."""

    UNKNOWN = "unknown"
    BOOTSTRAPPING = "bootstrapping"
    TRUSTED = "trusted"
    REFUSED = "refused"


_VIEW = {
    KeyStateCode.KEY_TRUSTED: ParentKeyState.TRUSTED,
    KeyStateCode.KEY_UNKNOWN: ParentKeyState.UNKNOWN,
    KeyStateCode.BOOTSTRAP_AUTO_ONGOING: ParentKeyState.BOOTSTRAPPING,
    # The parent will not (or cannot) trust this key automatically: the operator must act
    # (fix the published KEY, pick another algorithm, or bootstrap by hand).
    KeyStateCode.KEY_INVALID: ParentKeyState.REFUSED,
    KeyStateCode.KEY_REFUSED: ParentKeyState.REFUSED,
    KeyStateCode.KEY_VALIDATION_FAIL: ParentKeyState.REFUSED,
    KeyStateCode.BOOTSTRAP_MANUAL_REQUIRED: ParentKeyState.REFUSED,
}


class KeyStateError(ValueError):
    """A KeyState option that cannot be read."""


@dataclass(frozen=True)
class KeyState:
    """One KeyState option: the key tag, the state code, KEY-DATA and the extra text."""

    key_id: int
    state: int
    key_data: int = 0
    extra_text: str = ""

    def __post_init__(self) -> None:
        if not 0 <= self.key_id <= 0xFFFF:
            raise KeyStateError(f"KEY-ID {self.key_id} is not a 16-bit key tag")
        if not 0 <= self.state <= 0xFF or not 0 <= self.key_data <= 0xFF:
            raise KeyStateError(f"KEY-STATE {self.state} / KEY-DATA {self.key_data}: 8 bits")

    def to_option(self) -> dns.edns.GenericOption:
        data = _FIXED.pack(self.key_id, self.state, self.key_data)
        code = dns.edns.OptionType.make(KEYSTATE_OPTION_CODE)
        return dns.edns.GenericOption(code, data + self.extra_text.encode())

    @classmethod
    def from_data(cls, data: bytes) -> KeyState:
        if len(data) < _FIXED.size:
            raise KeyStateError(
                f"KeyState option of {len(data)} octets; at least {_FIXED.size} expected")
        key_id, state, key_data = _FIXED.unpack_from(data)
        text = data[_FIXED.size:].decode("utf-8", errors="replace")
        return cls(key_id, state, key_data, text)

    @property
    def code(self) -> KeyStateCode | None:
        """The state as a known code, or None for an unassigned or private one."""
        try:
            return KeyStateCode(self.state)
        except ValueError:
            return None

    def describe(self) -> str:
        code = self.code
        name = code.name if code is not None else f"code {self.state}"
        return f"key {self.key_id}: {name}" + (f" ({self.extra_text})" if self.extra_text else "")


def inquiry(key_tag: int) -> dns.edns.GenericOption:
    """The option a child adds to ask about its key (KEY-STATE 2, key inquiry)."""
    return KeyState(key_tag, KeyStateCode.INQUIRY_KEY).to_option()


def add_option(message: dns.message.Message, state: KeyState, payload: int = 1232) -> None:
    """Put ``state`` in ``message``'s OPT record, replacing any KeyState already there."""
    kept = [o for o in message.options if o.otype != KEYSTATE_OPTION_CODE]
    message.use_edns(0, message.ednsflags, max(message.payload, payload),
                     options=[*kept, state.to_option()])


def find(message: dns.message.Message) -> KeyState | None:
    """The KeyState option of ``message``, None when it has none. Raises
    :class:`KeyStateError` when the option is there but malformed."""
    for option in message.options:
        if option.otype == KEYSTATE_OPTION_CODE:
            return KeyState.from_data(option.to_wire() or b"")
    return None


def parent_view(state: KeyState) -> ParentKeyState:
    """Fold a receiver's answer into unknown / bootstrapping / trusted / refused. A code
    the draft does not define (or a child-side code echoed back) says nothing: unknown."""
    code = state.code
    return _VIEW.get(code, ParentKeyState.UNKNOWN) if code is not None else ParentKeyState.UNKNOWN
