"""The ``[state] url``: parsed and checked where the config is loaded, and shown in
messages only with its password masked."""

from __future__ import annotations

import re

from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from core.errors import StateError

_EXPECTED = ("expected sqlite:///PATH or postgresql+psycopg://USER:PASSWORD@HOST[:PORT]/DATABASE")
# Everything between "scheme://user:" and the last "@": the password, however malformed
# the rest of the URL is (an '@' inside the password included).
_PASSWORD = re.compile(r"(://[^/@:]*:).*@")


def redact_url(text: str) -> str:
    """``text`` with any password replaced by ``***``: for messages, also when ``text`` is
    no valid URL at all."""
    return _PASSWORD.sub(r"\1***@", text)


def parse_url(text: str) -> URL:
    """The ``[state] url`` parsed; ``StateError`` (never showing the password) if it is
    malformed."""
    try:
        parsed = make_url(text)
        port = parsed.port
    except ArgumentError:
        # Not shown at all: without a recognisable scheme, what is the password is unknown.
        raise StateError(f"is not a valid URL; {_EXPECTED}") from None
    except ValueError:  # SQLAlchemy parses the port with int()
        raise StateError(f"{redact_url(text)!r}: the port is not a number; {_EXPECTED}") \
            from None
    if port is not None and not 0 < port < 65536:
        raise StateError(f"{redact_url(text)!r}: port {port} is out of range (1-65535)")
    if parsed.host is not None and "@" in parsed.host:
        raise StateError(f"{redact_url(text)!r}: an '@' in the user name or password must be "
                         "written %40")
    return parsed
