"""A PowerDNS Authoritative 4.7 instance (SQLite backend) for the lab, and the few API
calls the lab itself needs to set zones up.

Configuration follows docs/lab-notes.md: ``direct-dnskey=yes`` so foreign DNSKEY/CDS/
CDNSKEY records PATCHed through the API are served (Model 2), and every cache at 0 so a
change made by a test is visible in the next answer.
"""

from __future__ import annotations

import secrets
import shutil
import sqlite3
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dns.dnssec
import httpx

from lab import net, proc
from lab.errors import LabError
from lab.zones import ds_text, parse_dnskey

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

    def client(self) -> httpx.Client:
        """An API client (base URL .../servers/localhost, key header set). Close it."""
        return api_client(self.api_url, self.api_key)

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


def api_client(api_url: str, api_key: str) -> httpx.Client:
    return httpx.Client(
        base_url=api_url + API_PATH,
        headers={"X-API-Key": api_key},
        timeout=30.0,
        # the lab creates zones from a thread pool over one client per server
        limits=httpx.Limits(max_connections=16, max_keepalive_connections=16),
    )


def _check(resp: httpx.Response, what: str) -> httpx.Response:
    if resp.is_error:
        req = resp.request
        raise LabError(
            f"PowerDNS API {what} ({req.method} {req.url}): HTTP {resp.status_code}:"
            f" {resp.text[:500]}"
        )
    return resp


def create_zone(client: httpx.Client, zone: str, rrsets: list[dict[str, Any]]) -> None:
    # api_rectify must be asked for: the API stores API-RECTIFY=0 when it is omitted, and
    # an unrectified zone serves a broken NSEC chain (every denial then fails to validate).
    body = {
        "name": zone,
        "kind": "Native",
        "nameservers": [],
        "api_rectify": True,
        "rrsets": rrsets,
    }
    _check(client.post("/zones", json=body), f"create zone {zone}")


def add_keys(
    client: httpx.Client, zone: str, algorithm: str = "ECDSAP256SHA256", csk: bool = False
) -> list[CryptoKey]:
    """Give ``zone`` its own active keys (KSK+ZSK, or one CSK) and rectify it.

    Rectify afterwards: a zone created without keys has no NSEC ordering data, and adding
    keys does not compute it.
    """
    added = []
    for keytype in ("csk",) if csk else ("ksk", "zsk"):
        body: dict[str, Any] = {
            "keytype": keytype,
            "active": True,
            "published": True,
            "algorithm": algorithm,
        }
        if algorithm.upper().startswith("RSA"):
            body["bits"] = 2048
        resp = _check(
            client.post(f"/zones/{zone}/cryptokeys", json=body), f"add {keytype} to {zone}"
        )
        # The POST reports the first key of a zone as "csk" whatever was asked; keep the
        # type we created (GET /cryptokeys agrees with it afterwards).
        added.append(_crypto_key({**resp.json(), "keytype": keytype}))
    _check(client.put(f"/zones/{zone}/rectify"), f"rectify {zone}")
    return added


def _crypto_key(k: dict[str, Any]) -> CryptoKey:
    return CryptoKey(
        id=int(k["id"]),
        keytype=str(k["keytype"]),
        flags=int(k["flags"]),
        algorithm=str(k["algorithm"]),
        active=bool(k["active"]),
        published=bool(k["published"]),
        dnskey=str(k["dnskey"]),
    )


def keys(client: httpx.Client, zone: str) -> list[CryptoKey]:
    """PowerDNS' own keys of ``zone``, ordered by id."""
    data = _check(client.get(f"/zones/{zone}/cryptokeys"), f"list keys of {zone}").json()
    return sorted((_crypto_key(k) for k in data), key=lambda k: k.id)


def set_rrset(
    client: httpx.Client, zone: str, name: str, rtype: str, *, ttl: int, contents: list[str]
) -> None:
    """Replace one rrset (``contents`` empty: delete it)."""
    if contents:
        change: dict[str, Any] = {
            "name": name,
            "type": rtype,
            "ttl": ttl,
            "changetype": "REPLACE",
            "records": [{"content": c, "disabled": False} for c in contents],
        }
    else:
        change = {"name": name, "type": rtype, "changetype": "DELETE"}
    _check(client.patch(f"/zones/{zone}", json={"rrsets": [change]}), f"{rtype} {name}")
