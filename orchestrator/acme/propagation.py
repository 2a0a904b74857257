"""``--wait``: until every nameserver of every signer serves the values, at every address
its name resolves to, and (signed zone) the TXT RRset validates under the DNSKEY RRset
that same server serves. The judging is pure (orchestrator/decide/acme.py); this module
asks the servers."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdatatype
import dns.rrset

from core.config import ZoneConfig, hostport
from core.errors import MultisignerError
from orchestrator.decide.acme import ServedTxt, absent_problem, served_problem
from orchestrator.runtime import Reporter, Runtime
from providers.nameservers import query


class PropagationTimeout(MultisignerError):
    """Some nameserver did not serve the value (validly) in time."""


# Given the providers some of whose addresses do not serve the values yet: make sure
# their APIs still hold them (a provider may drop a record behind the controller's back).
Repair = Callable[[set[str]], Awaitable[None]]
REPAIR_AFTER = 1.0  # seconds of waiting before a lagging provider's API is looked at
REPAIR_EVERY = 2.0  # and then at most this often (one API read per lagging provider)


@dataclass(frozen=True)
class Address:
    provider: str
    server: str  # as configured
    address: str  # host:port form for query()


async def addresses(rt: Runtime, zone: ZoneConfig) -> list[Address]:
    """Every address of every nameserver of every signer (a name may have several: the
    CA's resolver may pick any)."""
    loop = asyncio.get_running_loop()
    out: list[Address] = []
    for provider in rt.signers(zone):
        for server in rt.config.provider(provider).nameservers:
            host, port = hostport(server)
            try:
                socket.inet_pton(socket.AF_INET6 if ":" in host else socket.AF_INET, host)
                found = [host]
            except OSError:
                try:
                    infos = await asyncio.wait_for(loop.getaddrinfo(
                        host, port, proto=socket.IPPROTO_UDP), 5.0)
                except (OSError, TimeoutError) as exc:
                    raise MultisignerError(f"cannot resolve nameserver {host!r} of provider "
                                           f"{provider}: {exc}") from None
                found = sorted({str(i[4][0]) for i in infos})
            out += [Address(provider, server, f"[{a}]:{port}" if ":" in a else f"{a}:{port}")
                    for a in found]
    return out


def _rrsets(response: dns.message.Message, name: dns.name.Name, rdtype: dns.rdatatype.RdataType
            ) -> tuple[dns.rrset.RRset | None, dns.rrset.RRset | None]:
    data = sigs = None
    for rrset in response.answer:
        if rrset.name != name:
            continue
        if rrset.rdtype == rdtype:
            data = rrset
        elif rrset.rdtype == dns.rdatatype.RRSIG and rrset.covers == rdtype:
            sigs = rrset
    return data, sigs


async def observe(where: Address, zone: dns.name.Name, name: dns.name.Name) -> ServedTxt:
    """The TXT RRset (with RRSIGs) at ``name`` and the DNSKEY RRset one address serves."""
    base = ServedTxt(where.provider, where.server, where.address)
    try:
        txt, keys = await asyncio.gather(query(where.address, name, dns.rdatatype.TXT),
                                         query(where.address, zone, dns.rdatatype.DNSKEY))
    except MultisignerError as exc:
        return ServedTxt(**{**base.__dict__, "error": str(exc)})
    for response in (txt, keys):
        if response.rcode() not in (dns.rcode.NOERROR, dns.rcode.NXDOMAIN):
            return ServedTxt(**{**base.__dict__, "error": "answered "
                                + dns.rcode.to_text(response.rcode())})
        if not response.flags & dns.flags.AA:
            return ServedTxt(**{**base.__dict__, "error": "not authoritative (no AA bit)"})
    rrset, sigs = _rrsets(txt, name, dns.rdatatype.TXT)
    dnskey, _ = _rrsets(keys, zone, dns.rdatatype.DNSKEY)
    return ServedTxt(where.provider, where.server, where.address, rrset, sigs, dnskey)


async def wait_for(rt: Runtime, zone: ZoneConfig, name: dns.name.Name, values: Sequence[str],
                   *, present: bool, timeout: float, report: Reporter,
                   repair: Repair | None = None) -> tuple[float, int]:
    """Poll until every address serves ``values`` validly (``present``) or none of them
    any more; (seconds it took, addresses checked). PropagationTimeout naming the servers
    still behind. ``repair``: called with the lagging providers after REPAIR_AFTER and
    then every REPAIR_EVERY seconds (a nameserver behind its API is normal; an API that
    lost the value is not, and waiting would never end)."""
    apex = dns.name.from_text(zone.name)
    where = await addresses(rt, zone)
    started = time.monotonic()
    delay, last = 0.2, ""
    repaired = started - REPAIR_EVERY + REPAIR_AFTER
    while True:
        views = await asyncio.gather(*(observe(a, apex, name) for a in where))
        judge = _judge(views, values, apex, present)
        pending = {f"{v.provider} {v.address}": p for v in views if (p := judge(v))}
        elapsed = time.monotonic() - started
        if not pending:
            return round(elapsed, 3), len(where)
        line = (f"{name.to_text()}: {len(where) - len(pending)}/{len(where)} nameserver "
                f"addresses ready; waiting for " + "; ".join(
                    f"{k}: {v}" for k, v in sorted(pending.items())))
        if elapsed >= timeout:
            raise PropagationTimeout(f"timed out after {timeout:g}s: {line}")
        if repair is not None and time.monotonic() - repaired >= REPAIR_EVERY:
            repaired = time.monotonic()
            await repair({v.provider for v in views if judge(v)})
        if line != last:
            report(f"{line} ({elapsed:.1f}s)")
            last = line
        await asyncio.sleep(min(delay, max(0.0, timeout - elapsed)))
        delay = min(delay * 1.5, 2.0)


def _judge(views: Sequence[ServedTxt], values: Sequence[str], apex: dns.name.Name,
           present: bool) -> Callable[[ServedTxt], str | None]:
    signed = any(v.dnskey is not None for v in views)
    now = datetime.now(UTC)
    if present:
        return lambda v: served_problem(v, values, apex, signed=signed, now=now)
    return lambda v: absent_problem(v, values)
