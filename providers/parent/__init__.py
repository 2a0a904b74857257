"""The child's side of an active parent (``[zones.parent] type = "dsync"``): find the
parent's UPDATE receiver by DSYNC (RFC 9859), send it SIG(0)-signed DNS UPDATEs over TCP
and say clearly what it answered, and ask it about our key with the KeyState option.

    discovery.py   DSYNC lookup at the parent's nameservers, the receiver's addresses
    exchange.py    one request/response over TCP, raw wire (a SIG(0)-signed answer is
                   beyond dnspython's parser)
    update.py      send an UPDATE, interpret the answer (rcode, TSIG-style error, EDE)
    keystate.py    the KeyState inquiry (draft-berra-dnsop-keystate)
    errors.py      ParentError and its kinds
    client.py      DsyncParent: all of the above for one zone, with its key store
"""

from providers.parent.client import DsyncParent
from providers.parent.discovery import DsyncDiscovery, discover, find_parent_zone
from providers.parent.errors import (
    ParentError,
    ParentUnreachable,
    ParentUpdateRefused,
)
from providers.parent.keystate import KeyStateAnswer, query_key_state
from providers.parent.update import UpdateAnswer, send_update

__all__ = [
    "DsyncDiscovery",
    "DsyncParent",
    "KeyStateAnswer",
    "ParentError",
    "ParentUnreachable",
    "ParentUpdateRefused",
    "UpdateAnswer",
    "discover",
    "find_parent_zone",
    "query_key_state",
    "send_update",
]
