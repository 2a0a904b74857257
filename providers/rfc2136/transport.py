"""The signer's two DNS seams: apex queries (TCP, DO bit) and TSIG-signed UPDATEs (TCP).

Every failure leaves here as a ``ProviderError`` naming the server and what to check:
a TSIG key the server does not know (BADKEY) or whose secret differs (BADSIG), a clock
skew (BADTIME), an UPDATE the server refuses (REFUSED, NOTAUTH: no ACL grants this key the
update), or no answer at all.
"""

from __future__ import annotations

import asyncio
import socket
import struct

import dns.asyncquery
import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdatatype
import dns.tsig
import dns.tsigkeyring
import dns.update

from core.config import Rfc2136ProviderConfig, hostport
from core.errors import ProviderAuthError, ProviderError, ProviderUnreachable, ZoneMissing
from providers.rfc2136.served import APEX_TYPES, NotServed, Served, absorb

_TSIG_ERRORS: dict[type[Exception], str] = {
    dns.tsig.PeerBadKey: "BADKEY: the server does not accept TSIG key {name} for this "
                         "zone (unknown to it, or no update ACL names it); check "
                         "tsig_name and the server's key and ACL statements",
    dns.tsig.PeerBadSignature: "BADSIG: the server rejects the signature of TSIG key "
                               "{name}; tsig_secret or tsig_algorithm differs from the "
                               "server's",
    dns.tsig.PeerBadTime: "BADTIME: the server's clock and this host's differ by more "
                          "than the TSIG fudge; fix the clocks",
    dns.tsig.PeerBadTruncation: "BADTRUNC: the server rejects the TSIG MAC length",
}


async def _address(host: str) -> str:
    try:
        socket.inet_pton(socket.AF_INET6 if ":" in host else socket.AF_INET, host)
        return host
    except OSError:
        pass
    # In a thread (the loop's getaddrinfo): a slow resolver must not stall the event loop.
    found = await asyncio.get_running_loop().getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    return str(found[0][4][0])


class Transport:
    """Queries and UPDATEs for one provider."""

    def __init__(self, config: Rfc2136ProviderConfig) -> None:
        self.name = config.name
        self.server = config.server
        self.nameservers = list(config.nameservers)
        self.timeout = config.timeout.total_seconds()
        self.tsig_name = config.tsig_name
        self._keyring = dns.tsigkeyring.from_text(
            {config.tsig_name: (config.tsig_algorithm,
                                config.tsig_secret.get_secret_value().strip())})

    async def read(self, zone: str, server: str, types: tuple[str, ...] = APEX_TYPES) -> Served:
        """The apex RRsets of ``types`` as ``server`` serves them."""
        origin = dns.name.from_text(zone)
        served = Served(origin)
        host, port = hostport(server)
        for rrtype in types:
            request = dns.message.make_query(origin, rrtype, want_dnssec=True)
            request.flags &= ~dns.flags.RD
            try:
                response = await dns.asyncquery.tcp(request, await _address(host), port=port,
                                                    timeout=self.timeout)
                absorb(served, rrtype, response)
            except NotServed as exc:
                raise ZoneMissing(
                    f"{server} does not serve {zone} ({exc}); create the zone there and "
                    "sign it, or remove the provider from the zone's signers",
                    provider=self.name, zone=zone, endpoint=f"{server} {rrtype}") from None
            except (dns.exception.DNSException, OSError) as exc:
                raise ProviderUnreachable(
                    f"no answer from {server} to {zone} {rrtype} "
                    f"({exc.__class__.__name__}: {exc}); check that it is up and reachable",
                    provider=self.name, zone=zone, endpoint=f"{server} {rrtype}") from None
        return served

    async def probe(self) -> None:
        """Any answer over TCP from the update server (REFUSED included) proves it is up."""
        host, port = hostport(self.server)
        request = dns.message.make_query(".", "SOA")
        try:
            await dns.asyncquery.tcp(request, await _address(host), port=port,
                                     timeout=self.timeout)
        except (dns.exception.DNSException, OSError) as exc:
            raise ProviderUnreachable(
                f"{self.server} does not answer DNS over TCP ({exc.__class__.__name__}: "
                f"{exc}); check server in the config", provider=self.name,
                endpoint=self.server) from None

    async def read_any(self, zone: str) -> Served:
        """The apex as the first answering nameserver serves it (a missing zone is not
        retried elsewhere: every nameserver of the provider should serve it)."""
        last: ProviderUnreachable | None = None
        for server in self.nameservers:
            try:
                return await self.read(zone, server)
            except ProviderUnreachable as exc:
                last = exc
        assert last is not None
        raise last

    async def _signed(self, zone: str, message: dns.message.Message,
                      endpoint: str) -> dns.message.Message:
        """One TSIG-signed exchange with ``server``; TSIG errors and no answer raised."""
        try:
            return await asyncio.wait_for(self._exchange(message), self.timeout)
        except tuple(_TSIG_ERRORS) as exc:
            raise ProviderAuthError(_TSIG_ERRORS[type(exc)].format(name=self.tsig_name),
                                    provider=self.name, zone=zone, endpoint=endpoint) from None
        except (dns.exception.DNSException, OSError, TimeoutError, EOFError) as exc:
            raise ProviderUnreachable(
                f"no answer ({exc.__class__.__name__}: {exc}); check that {self.server} is "
                "up and accepts DNS over TCP", provider=self.name, zone=zone,
                endpoint=endpoint) from None

    async def prove_key(self, zone: str) -> None:
        """A TSIG-signed SOA query to ``server``: the server knows the key and the secret
        matches (BADKEY/BADSIG otherwise), and it is authoritative for the zone. Run
        before every read, so a wrong key stops a sync before anything is written
        anywhere (whether the update ACL admits the key only an UPDATE shows)."""
        query = dns.message.make_query(zone, "SOA")
        query.flags &= ~dns.flags.RD
        query.use_tsig(self._keyring, keyname=dns.name.from_text(self.tsig_name))
        endpoint = f"signed SOA query to {self.server}"
        response = await self._signed(zone, query, endpoint)
        if response.rcode() != dns.rcode.NOERROR or not response.flags & dns.flags.AA:
            raise ZoneMissing(
                f"{self.server} is not authoritative for {zone} "
                f"({dns.rcode.to_text(response.rcode())}); server must be the zone's "
                "primary, where UPDATEs are applied", provider=self.name, zone=zone,
                endpoint=endpoint)

    async def update(self, zone: str, update: dns.update.UpdateMessage, what: str) -> None:
        """Send one signed UPDATE to ``server``; raise a ProviderError unless NOERROR."""
        endpoint = f"UPDATE {what} to {self.server}"
        response = await self._signed(zone, update, endpoint)
        rcode = response.rcode()
        if rcode == dns.rcode.NOERROR and response.had_tsig:
            return
        text = dns.rcode.to_text(rcode)
        if rcode in (dns.rcode.REFUSED, dns.rcode.NOTAUTH) or not response.had_tsig:
            raise ProviderAuthError(
                f"{text}{'' if response.had_tsig else ' (answer not signed)'}: the server "
                f"refused the update; check that it is primary for {zone} and that its ACL "
                f"allows updates signed with TSIG key {self.tsig_name}",
                provider=self.name, zone=zone, endpoint=endpoint)
        hint = ""
        if rcode == dns.rcode.SERVFAIL and what == "DNSKEY":
            # BIND 9.18 with inline signing applies UPDATEs to the unsigned zone, where it
            # has no keys: "found no active private keys, unable to generate any
            # signatures" in its log, SERVFAIL on the wire.
            hint = ("; a server that signs with inline signing (BIND 9.18) refuses DNSKEY "
                    "updates like this and cannot be a Model 2 signer through this "
                    "adapter, see docs/providers/rfc2136.md")
        raise ProviderError(f"{text}: the server did not apply the update{hint}",
                            provider=self.name, zone=zone, endpoint=endpoint)

    async def _exchange(self, message: dns.message.Message) -> dns.message.Message:
        """One TCP exchange. An answer the server did not sign (a server that is not
        authoritative for the zone says NOTAUTH unsigned) is still parsed, for its rcode;
        the callers treat it as refused, never as success."""
        host, port = hostport(self.server)
        wire = message.to_wire()
        reader, writer = await asyncio.open_connection(await _address(host), port)
        try:
            writer.write(struct.pack("!H", len(wire)) + wire)
            await writer.drain()
            (length,) = struct.unpack("!H", await reader.readexactly(2))
            answer = await reader.readexactly(length)
        finally:
            writer.close()
        try:
            return dns.message.from_wire(answer, keyring=message.keyring,
                                         request_mac=message.mac)
        except dns.exception.FormError:
            unsigned = dns.message.from_wire(answer)
            if unsigned.had_tsig:
                raise
            return unsigned

    def message(self, zone: str) -> dns.update.UpdateMessage:
        return dns.update.UpdateMessage(zone, keyring=self._keyring,
                                        keyname=dns.name.from_text(self.tsig_name))
