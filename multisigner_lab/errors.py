"""The one error the lab raises: a server did not start, answer or stop as expected."""

from __future__ import annotations

from core.errors import MultisignerError


class LabError(MultisignerError):
    """The local lab could not be started, used or stopped; the message names the server
    and, when it died or never became ready, ends with the tail of its log."""
