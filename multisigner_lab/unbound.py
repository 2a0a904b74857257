"""Unbound as the lab's validating resolver (recipe in docs/lab.md).

It trusts the parent zone ``test.`` by its KSK DNSKEY(s) and reaches every server through
stub zones, so no root or network is involved. Its cache is capped at a few seconds so a
test sees the zone's current state soon after a change.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dns.exception
import dns.flags
import dns.message
import dns.query

from multisigner_lab import net, proc
from multisigner_lab.errors import LabError
from multisigner_lab.zones import PARENT_ZONE

_START_ATTEMPTS = 3

SERVER = """\
server:
  interface: {address}
  port: {port}
  interface-automatic: no
  # a collision with another lab must fail loudly, not share the port
  so-reuseport: no
  do-ip6: no
  num-threads: 1
  do-daemonize: no
  username: ""
  chroot: ""
  directory: "{dir}"
  pidfile: "{dir}/unbound.pid"
  use-syslog: no
  logfile: "{dir}/unbound.log"
  log-time-ascii: yes
  verbosity: 1
  val-log-level: 2
  log-servfail: yes
  do-not-query-localhost: no
  access-control: 127.0.0.0/8 allow
  local-zone: "{parent}" nodefault
  module-config: "validator iterator"
  cache-max-ttl: {cache_max_ttl}
  cache-max-negative-ttl: {cache_max_ttl}
  serve-expired: no
  # bogus answers are cached for 60 s and a misbehaving server is avoided for 15 min by
  # default: tests break and repair zones within seconds, so forget both quickly
  val-bogus-ttl: {cache_max_ttl}
  infra-host-ttl: 10
  infra-keep-probing: yes
{anchors}
remote-control:
  control-enable: no
"""


def config_text(
    directory: Path,
    address: str,
    port: int,
    trust_anchors: Sequence[str],
    stubs: Mapping[str, Sequence[tuple[str, int]]],
    *,
    cache_max_ttl: int = 5,
) -> str:
    """unbound.conf: ``trust_anchors`` are DNSKEY texts of the parent zone's KSKs;
    ``stubs`` maps a zone (parent and every child) to its servers' (address, port)."""
    anchors = "\n".join(f'  trust-anchor: "{PARENT_ZONE} DNSKEY {a}"' for a in trust_anchors)
    text = SERVER.format(
        address=address,
        port=port,
        dir=directory,
        parent=PARENT_ZONE,
        cache_max_ttl=cache_max_ttl,
        anchors=anchors,
    )
    for zone, servers in stubs.items():
        text += f'stub-zone:\n  name: "{zone}"\n'
        text += "".join(f"  stub-addr: {a}@{p}\n" for a, p in servers)
    return text


@dataclass
class Unbound:
    directory: Path
    address: str
    port: int
    proc: proc.Proc

    @classmethod
    def start(
        cls,
        directory: Path,
        trust_anchors: Sequence[str],
        stubs: Mapping[str, Sequence[tuple[str, int]]],
        timeout: float = 10.0,
    ) -> Unbound:
        directory.mkdir(parents=True, exist_ok=True)
        conf = directory / "unbound.conf"
        last: LabError | None = None
        for _ in range(_START_ATTEMPTS):
            address, port = net.loopback_endpoint()
            conf.write_text(config_text(directory, address, port, trust_anchors, stubs))
            # Unbound's own logfile and its stderr (startup errors) share one file, both
            # appending, so a failure message shows everything.
            p = proc.spawn(
                "unbound", ["unbound", "-d", "-c", str(conf)], directory, log_name="unbound.log"
            )
            try:
                proc.wait_ready(p, proc.dns_probe(address, port, "nx.invalid."), timeout)
                return cls(directory, address, port, p)
            except LabError as exc:
                last = exc
                proc.stop(p)
        raise LabError(f"Unbound did not start after {_START_ATTEMPTS} tries: {last}")

    def to_json(self) -> dict[str, Any]:
        return {"dir": str(self.directory), "address": self.address, "port": self.port}

    def wait_validating(self, zone: str, timeout: float = 10.0) -> None:
        """Wait until ``zone SOA`` resolves with AD: the trust anchor and the stub to the
        parent work (Unbound starts even with an anchor it cannot use)."""

        def probe() -> bool:
            q = dns.message.make_query(zone, "SOA", want_dnssec=True)
            try:
                resp = dns.query.udp(q, self.address, port=self.port, timeout=1.0)
            except dns.exception.Timeout:
                return False
            return bool(resp.flags & dns.flags.AD)

        try:
            proc.wait_ready(self.proc, probe, timeout)
        except LabError as exc:
            raise LabError(f"Unbound does not validate {zone}: {exc}") from exc
