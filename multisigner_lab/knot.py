"""A Knot DNS 3.2 instance for the lab, in offline-KSK mode (a Model 1 signer).

Configuration (docs/lab.md, "Knot DNS"): policy ``offline`` with
``manual: on`` and ``offline-ksk: on``, ``dnskey-ttl`` = the lab's DNSKEY TTL,
``zone-max-ttl`` = the larger of it and the data TTL, its
own rundir, control socket, KASP database and zone directory, listening on a random
loopback address. :meth:`KnotInstance.create` writes the files, pregenerates the ZSK
(``keymgr ZONE pregenerate``) and checks the config; :meth:`start` runs ``knotd`` in the
foreground as a child process of its own group; :meth:`stop` stops that group.

Until the zone owner's first SKR is imported, Knot cannot load an offline-KSK zone
("no offline KSK records available") and answers SERVFAIL for it.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from multisigner_lab import net, proc, zones
from multisigner_lab.errors import LabError

_START_ATTEMPTS = 3
_SOCKET_PATH_MAX = 100  # sun_path is 108 bytes
_TOOL_TIMEOUT = 30.0

CONF = """\
server:
    rundir: "{rundir}"
    listen: {address}@{port}

control:
    listen: "{socket}"

database:
    storage: "{directory}/db"

log:
  - target: stderr
    any: info

policy:
  - id: offline
    algorithm: {algorithm}
    manual: on
    offline-ksk: on
    dnskey-ttl: {dnskey_ttl}
    zone-max-ttl: {max_ttl}
    rrsig-lifetime: {rrsig_lifetime}
    rrsig-refresh: {rrsig_refresh}

template:
  - id: default
    storage: "{directory}/zones"
    file: "%s.zone"
    dnssec-signing: on
    dnssec-policy: offline

zone:
{zone_list}
"""


def zone_text(
    zone: str, ns_names: Sequence[str], ttl: int, dnskey_ttl: int | None = None
) -> str:
    """The child zone in zone-file form: the same records every lab provider serves
    (``zones.child_rrsets``), SOA serial 1 and SOA minimum = ``dnskey_ttl`` (default
    ``ttl``), as at the PowerDNS providers."""
    lines = [f"$TTL {ttl}"]
    for rrset in zones.child_rrsets(zone, list(ns_names), ttl, dnskey_ttl):
        for record in rrset["records"]:
            lines.append(f"{rrset['name']} {rrset['ttl']} IN {rrset['type']} {record['content']}")
    return "\n".join(lines) + "\n"


@dataclass
class KnotInstance:
    """One knotd: DNS on ``address:port``, config at ``conf_path``, files under ``dir``."""

    name: str
    address: str
    port: int
    conf_path: Path
    dir: Path
    zones: tuple[str, ...] = ("example.test.",)
    ttl: int = 2
    dnskey_ttl: int | None = None  # None: ``ttl``
    rrsig_lifetime: str = "14d"
    rrsig_refresh: str = "7d"
    algorithm: str = "ecdsap256sha256"
    rundir: Path | None = None
    process: proc.Proc | None = field(default=None, repr=False)

    # ------------------------------------------------------------------- set up

    @classmethod
    def create(
        cls,
        name: str,
        directory: Path,
        *,
        zones: Sequence[str] = ("example.test.",),
        ttl: int = 2,
        dnskey_ttl: int | None = None,
        ns_names: Sequence[str] | None = None,
        rrsig_lifetime: str = "14d",
        rrsig_refresh: str = "7d",
        algorithm: str = "ecdsap256sha256",
        pregenerate: str | None = "+14d",
    ) -> KnotInstance:
        """Write config and zone files in ``directory`` (created), pregenerate the ZSK of
        every zone up to ``pregenerate`` (None: make no key), check the config. Does not
        start the server (:meth:`start`)."""
        directory = directory.resolve()
        (directory / "zones").mkdir(parents=True, exist_ok=True)
        (directory / "db").mkdir(exist_ok=True)
        rundir = directory / "run"
        if len(str(rundir / "knot.sock")) > _SOCKET_PATH_MAX:
            rundir = Path(tempfile.mkdtemp(prefix="mslab-knot-"))
        rundir.mkdir(exist_ok=True)
        zone_names = tuple(z if z.endswith(".") else z + "." for z in zones)
        address, port = net.loopback_endpoint()
        knot = cls(
            name=name,
            address=address,
            port=port,
            conf_path=directory / "knot.conf",
            dir=directory,
            zones=zone_names,
            ttl=ttl,
            dnskey_ttl=dnskey_ttl,
            rrsig_lifetime=rrsig_lifetime,
            rrsig_refresh=rrsig_refresh,
            algorithm=algorithm,
            rundir=rundir,
        )
        for zone in zone_names:
            names = list(ns_names) if ns_names else [zones_ns_name(name)]
            text = zone_text(zone, names, ttl, dnskey_ttl)
            (directory / "zones" / f"{zone}zone").write_text(text)
        knot.write_conf()
        knot.knotc("conf-check")
        if pregenerate is not None:
            for zone in zone_names:
                knot.keymgr(zone, "pregenerate", pregenerate)
        return knot

    @property
    def key_ttl(self) -> int:
        """The DNSKEY TTL Knot's policy asks for (``dnskey-ttl``)."""
        return self.ttl if self.dnskey_ttl is None else self.dnskey_ttl

    @property
    def socket(self) -> Path:
        return (self.rundir or self.dir / "run") / "knot.sock"

    def write_conf(self) -> None:
        zone_list = "\n".join(f"  - domain: {z}" for z in self.zones)
        self.conf_path.write_text(
            CONF.format(
                rundir=self.rundir or self.dir / "run",
                socket=self.socket,
                address=self.address,
                port=self.port,
                directory=self.dir,
                algorithm=self.algorithm,
                dnskey_ttl=self.key_ttl,
                max_ttl=max(self.ttl, self.key_ttl),
                rrsig_lifetime=self.rrsig_lifetime,
                rrsig_refresh=self.rrsig_refresh,
                zone_list=zone_list,
            )
        )

    def _tool(self, argv: list[str]) -> str:
        return proc.run_tool(argv, f"Knot {self.name}: {' '.join(argv)}", timeout=_TOOL_TIMEOUT)

    def keymgr(self, *args: str) -> str:
        """Run ``keymgr -c CONF ARGS``; its stdout (LabError on failure)."""
        return self._tool(["keymgr", "-c", str(self.conf_path), *args])

    def knotc(self, *args: str) -> str:
        """Run ``knotc -c CONF ARGS``; its stdout (LabError on failure)."""
        return self._tool(["knotc", "-c", str(self.conf_path), *args])

    # ------------------------------------------------------------------- life cycle

    def start(self, timeout: float = 10.0) -> None:
        """Start ``knotd -c CONF`` in the foreground (its own process group) and wait
        until it answers DNS and its control socket; another port is tried when the start
        fails (the free-port probe is racy)."""
        if self.process is not None and self.process.alive():
            return
        last: LabError | None = None
        for attempt in range(_START_ATTEMPTS):
            if attempt:
                self.address, self.port = net.loopback_endpoint()
                self.write_conf()
            self.socket.unlink(missing_ok=True)
            p = proc.spawn(self.name, ["knotd", "-c", str(self.conf_path)], self.dir)
            try:
                proc.wait_ready(
                    p,
                    proc.all_of(self.socket.exists, proc.dns_probe(self.address, self.port)),
                    timeout,
                )
            except LabError as exc:
                last = exc
                proc.stop(p)
                continue
            self.process = p
            return
        raise LabError(f"Knot {self.name} did not start after {_START_ATTEMPTS} tries: {last}")

    def stop(self) -> None:
        """Stop knotd (TERM, KILL after 3 s); idempotent. Removes an out-of-tree rundir."""
        try:
            if self.process is not None:
                proc.stop(self.process)
        finally:
            self.process = None
            if self.rundir is not None and not self.rundir.is_relative_to(self.dir):
                shutil.rmtree(self.rundir, ignore_errors=True)

    def alive(self) -> bool:
        return self.process is not None and self.process.alive()

    @property
    def nameserver(self) -> str:
        """``address:port``, the form of ``nameservers`` in multisigner.toml."""
        return f"{self.address}:{self.port}"

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "address": self.address,
            "dns_port": self.port,
            "conf": str(self.conf_path),
            "dir": str(self.dir),
            "zones": list(self.zones),
            "process": self.process.to_json() if self.process is not None else None,
        }


def zones_ns_name(provider: str) -> str:
    """The NS hostname delegating to a lab provider (``ns1.k0.test.``)."""
    return zones.ns_name(provider)
