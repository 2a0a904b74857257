"""A Model 2 signer reached by DNS: reads what its nameservers serve, writes by
TSIG-signed DNS UPDATE (RFC 2136) over TCP. See docs/providers/rfc2136.md."""

from providers.rfc2136.adapter import Rfc2136Provider

__all__ = ["Rfc2136Provider"]
