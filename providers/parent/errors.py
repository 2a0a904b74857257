"""What can go wrong talking to a parent's UPDATE receiver.

    ParentError(MultisignerError)   anything: names the receiver and the zone
    ├── ParentUnreachable           no TCP connection, no or a garbled answer, timeout
    └── ParentUpdateRefused         the receiver answered, and not NOERROR: carries the
                                    rcode, the SIG(0)/TSIG-style error name and the EDEs
"""

from __future__ import annotations

from core.errors import MultisignerError


class ParentError(MultisignerError):
    """The parent's UPDATE receiver could not be used."""


class ParentUnreachable(ParentError):
    """No usable answer from the receiver (retry later; nothing is known to have changed)."""


class ParentUpdateRefused(ParentError):
    """The receiver answered with an error; ``rcode`` (text), ``reason`` (BADSIG, BADKEY,
    BADTIME, REFUSED, ...) and ``ede`` ((code, text) pairs) say why."""

    def __init__(self, message: str, *, rcode: str, reason: str,
                 ede: tuple[tuple[int, str], ...] = ()) -> None:
        super().__init__(message)
        self.rcode = rcode
        self.reason = reason
        self.ede = ede
