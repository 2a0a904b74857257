"""A PowerDNS Authoritative 4.7 instance (SQLite backend) for the lab, and the few API
calls the lab itself needs to set zones up, all through the product's adapter
(:class:`providers.powerdns.PowerDNSProvider`): its contract where it has the operation
(keys, key listing), its ``api_request`` for the rest (creating a zone, rectifying it,
rrsets below the apex).

Configuration (docs/lab.md has the why of each setting): ``direct-dnskey=yes`` so foreign
DNSKEY/CDS/CDNSKEY records PATCHed through the API are served (Model 2), and every cache
at 0 so a change made by a test is visible in the next answer.
"""

from __future__ import annotations

import secrets
import shutil
import sqlite3
import tempfile
from collections.abc import Coroutine
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar

import dns.dnssec
import httpx
from pydantic import SecretStr

from core.config import ProviderConfig
from core.errors import MultisignerError
from core.keys import Key, Role
from core.observation import ApiKey
from multisigner_lab import aio, net, proc, zones
from multisigner_lab.errors import LabError
from multisigner_lab.zones import ds_text, parse_dnskey
from providers.powerdns import PowerDNSProvider
from providers.powerdns_http import Transient

T = TypeVar("T")

SCHEMA = Path("/usr/share/pdns-backend-sqlite3/schema/schema.sqlite3.sql")
API_PATH = "/api/v1/servers/localhost"
_START_ATTEMPTS = 3
_SOCKET_PATH_MAX = 100  # sun_path is 108 bytes; pytest's tmp paths can get close

CONF = """\
launch=gsqlite3
gsqlite3-database={db}
gsqlite3-dnssec=yes
# lab data is disposable: skip fsync, it makes zone creation for benchmarks much faster
gsqlite3-pragma-synchronous=0
local-address={address}
local-port={dns_port}
api=yes
api-key={api_key}
webserver=yes
webserver-address=127.0.0.1
webserver-port={api_port}
webserver-allow-from=127.0.0.0/8
direct-dnskey=yes
cache-ttl=0
query-cache-ttl=0
negquery-cache-ttl=0
dnssec-key-cache-ttl=0
zone-metadata-cache-ttl=0
zone-cache-refresh-interval=0
consistent-backends=yes
default-soa-content=ns.p0.example. hostmaster.@ 0 3600 600 86400 2
daemon=no
guardian=no
disable-syslog=yes
socket-dir={socket_dir}
# no network here: the default would query secpoll.powerdns.com at startup
security-poll-suffix=
"""


@dataclass(frozen=True)
class CryptoKey:
    """One of PowerDNS' own keys for a zone, as GET /cryptokeys reports it."""

    id: int
    keytype: str  # ksk | zsk | csk
    flags: int
    algorithm: str
    active: bool
    published: bool
    dnskey: str  # "257 3 13 base64" in one token

    def ds(self, zone: str, digest: str = "SHA256") -> str:
        return ds_text(zone, self.dnskey, digest)

    @classmethod
    def from_api(cls, key: ApiKey) -> CryptoKey:
        """From the adapter's view of the key (its role decided by the SEP flag)."""
        return cls(
            id=int(key.key_id),
            keytype=key.role,
            flags=key.key.flags,
            algorithm=key.key.algorithm_name,
            active=key.active,
            published=key.published,
            dnskey=key.key.text,
        )

    @property
    def key_tag(self) -> int:
        return dns.dnssec.key_id(parse_dnskey(self.dnskey))


@dataclass
class PowerDNS:
    """A running PowerDNS: DNS on ``address:dns_port``, API on 127.0.0.1:``api_port``."""

    name: str
    directory: Path
    address: str
    dns_port: int
    api_port: int
    api_key: str
    proc: proc.Proc
    socket_dir: Path

    @property
    def api_url(self) -> str:
        """Base URL as the config wants it (``api_url`` in multisigner.toml)."""
        return f"http://127.0.0.1:{self.api_port}"

    @classmethod
    def start(cls, name: str, directory: Path, timeout: float = 10.0) -> PowerDNS:
        """Create the DB and config in ``directory`` and start the server; a fresh
        address and ports are tried again if it fails (the port probe is racy)."""
        directory.mkdir(parents=True, exist_ok=True)
        db = directory / "pdns.db"
        db.unlink(missing_ok=True)
        with sqlite3.connect(db) as conn:
            conn.executescript(SCHEMA.read_text())
        conn.close()
        socket_dir = directory
        if len(str(directory / "pdns.controlsocket")) > _SOCKET_PATH_MAX:
            socket_dir = Path(tempfile.mkdtemp(prefix="mslab-"))
        api_key = secrets.token_urlsafe(24)
        last: LabError | None = None
        for _ in range(_START_ATTEMPTS):
            address, dns_port = net.loopback_endpoint()
            api_port = net.free_tcp_port()
            (directory / "pdns.conf").write_text(
                CONF.format(
                    db=db,
                    address=address,
                    dns_port=dns_port,
                    api_key=api_key,
                    api_port=api_port,
                    socket_dir=socket_dir,
                )
            )
            (directory / "pdns.conf").chmod(0o600)  # holds the API key
            p = proc.spawn(name, ["pdns_server", f"--config-dir={directory}"], directory)
            server = cls(name, directory, address, dns_port, api_port, api_key, p, socket_dir)
            try:
                proc.wait_ready(
                    p,
                    proc.all_of(
                        proc.http_probe(server.api_url + API_PATH, {"X-API-Key": api_key}),
                        proc.dns_probe(address, dns_port),
                    ),
                    timeout,
                )
                return server
            except LabError as exc:
                last = exc
                proc.stop(p)
        if socket_dir != directory:
            remove_dir(socket_dir)
        raise LabError(f"PowerDNS {name} did not start after {_START_ATTEMPTS} tries: {last}")

    def adapter(self) -> PowerDNSProvider:
        """The product's adapter for this server's API; the caller closes it."""
        return adapter(self.name, self.api_url, self.api_key, f"{self.address}:{self.dns_port}")

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "dir": str(self.directory),
            "address": self.address,
            "dns_port": self.dns_port,
            "api_port": self.api_port,
            "api_url": self.api_url,
            "api_key": self.api_key,
            "socket_dir": str(self.socket_dir),
        }


def remove_dir(path: Path) -> None:
    """Remove an out-of-tree socket dir (made when the lab dir's path was too long)."""
    shutil.rmtree(path, ignore_errors=True)


def adapter(name: str, api_url: str, api_key: str, nameserver: str) -> PowerDNSProvider:
    """The product's PowerDNS adapter for one lab server (retries, errors, write
    throttling included); close it with ``await adapter.aclose()``."""
    config = ProviderConfig(
        name=name,
        type="powerdns",
        api_url=api_url,
        api_key=SecretStr(api_key),
        nameservers=[nameserver],
        timeout=timedelta(seconds=30),
    )
    return PowerDNSProvider(config)


def call(coro: Coroutine[Any, Any, T]) -> T:
    """Run an adapter coroutine for synchronous lab code; an API failure is a LabError."""
    try:
        return aio.run(coro)
    except (MultisignerError, Transient) as exc:  # Transient: a POST's ambiguous failure
        raise LabError(f"PowerDNS API: {exc}") from exc


def test_client(api_url: str, api_key: str) -> httpx.Client:
    """A bare synchronous API client (base URL ``.../servers/localhost``, key set) for
    tests that act as an operator would, outside the controller; the lab itself goes
    through :func:`adapter`. The caller closes it."""
    return httpx.Client(base_url=api_url + API_PATH, headers={"X-API-Key": api_key}, timeout=30.0)


async def create_zone(api: PowerDNSProvider, zone: str, rrsets: list[dict[str, Any]]) -> None:
    # api_rectify must be asked for: the API stores API-RECTIFY=0 when it is omitted, and
    # an unrectified zone serves a broken NSEC chain (every denial then fails to validate).
    body = {
        "name": zone,
        "kind": "Native",
        "nameservers": [],
        "api_rectify": True,
        "rrsets": rrsets,
    }
    await api.api_request("POST", "/zones", json=body, idempotent=False)


async def add_keys(
    api: PowerDNSProvider, zone: str, algorithm: str = "ECDSAP256SHA256", csk: bool = False
) -> list[CryptoKey]:
    """Give ``zone`` its own active keys (KSK+ZSK, or one CSK) and rectify it.

    Rectify afterwards: a zone created without keys has no NSEC ordering data, and adding
    keys does not compute it."""
    roles: tuple[Role, ...] = ("csk",) if csk else ("ksk", "zsk")
    added = []
    for role in roles:
        if algorithm.upper().startswith("RSA"):
            added.append(await _add_rsa_key(api, zone, role, algorithm))
        else:
            key = await api.create_key(zone, role, algorithm, active=True, published=True)
            added.append(CryptoKey.from_api(key))
    await api.api_request("PUT", f"/zones/{zone}/rectify", zone=zone)
    return added


async def _add_rsa_key(api: PowerDNSProvider, zone: str, role: Role, algorithm: str) -> CryptoKey:
    """PowerDNS wants the size of an RSA key (HTTP 422 without ``bits``), which the
    adapter's ``create_key`` does not send; every other algorithm has a fixed size."""
    body = {"keytype": role, "active": True, "published": True, "algorithm": algorithm}
    path = f"/zones/{zone}/cryptokeys"
    item = await api.api_request(
        "POST", path, zone=zone, json={**body, "bits": 2048}, idempotent=False
    )
    key = Key.parse(str(item["dnskey"]))
    return CryptoKey.from_api(ApiKey(key, role, True, True, str(item["id"])))


async def keys(api: PowerDNSProvider, zone: str) -> list[CryptoKey]:
    """PowerDNS' own keys of ``zone``, ordered by id."""
    state = await api.read_keys(zone)
    return sorted((CryptoKey.from_api(k) for k in state.own_keys), key=lambda k: k.id)


async def read_zone(api: PowerDNSProvider, zone: str) -> dict[str, Any]:
    """``GET /zones/{zone}``: the zone with all its rrsets, as the API returns it."""
    data: dict[str, Any] = await api.api_request("GET", f"/zones/{zone}", zone=zone)
    return data


def rrset_change(name: str, rtype: str, ttl: int, contents: list[str]) -> dict[str, Any]:
    """A PATCH entry replacing one rrset (``contents`` empty: deleting it)."""
    if not contents:
        return {"name": name, "type": rtype, "changetype": "DELETE"}
    return {**zones.rrset(name, rtype, ttl, contents), "changetype": "REPLACE"}


async def patch_rrset(
    api: PowerDNSProvider, zone: str, name: str, rtype: str, *, ttl: int, contents: list[str]
) -> None:
    """Replace one rrset anywhere in ``zone`` (``contents`` empty: delete it); the
    adapter's own ``set_apex_rrset`` covers the apex only."""
    body = {"rrsets": [rrset_change(name, rtype, ttl, contents)]}
    await api.api_request("PATCH", f"/zones/{zone}", zone=zone, json=body)


def set_rrset(
    client: httpx.Client, zone: str, name: str, rtype: str, *, ttl: int, contents: list[str]
) -> None:
    """:func:`patch_rrset` for tests, over a :func:`test_client` (``Lab.pdns_api``): they
    break and repair zones as an operator would, behind the controller's back."""
    body = {"rrsets": [rrset_change(name, rtype, ttl, contents)]}
    resp = client.patch(f"/zones/{zone}", json=body)
    if resp.is_error:
        detail = f"HTTP {resp.status_code}: {resp.text[:300]}"
        raise LabError(f"PowerDNS API: PATCH {rtype} {name} in {zone}: {detail}")
