"""The Model 1 lab: the zone owner holds the one KSK, Knot DNS providers hold their ZSKs.

What runs (all on random loopback addresses, all stopped by :meth:`Model1Lab.stop`):

- the signed PowerDNS parent ``test.`` (as in :class:`lab.Lab`), delegating
  every child zone to every Knot instance -- or, with ``delegated=[...]``, to those only --
  (``ns1.kN.test.``; an A record for every Knot either way) with a SHA-256 DS of the zone's
  owner KSK: the owner registered it;
- N Knot DNS 3.2 instances ``k0..k{n-1}`` (:mod:`lab.knot`), each on its own
  loopback address, serving every child zone in offline-KSK mode with a pregenerated ZSK,
  the zone's apex NS RRset naming the delegated Knots.
  **Until the first SKR is imported a zone does not load and Knot answers SERVFAIL for
  it** (lab-notes "As a Model 1 signer"): the controller's first sync brings it up;
- the owner KSK store, one KSK per zone generated in it: ``store="pkcs11"`` a SoftHSM2
  token ``multisigner`` in ``DIR/softhsm`` (its own ``softhsm2.conf``; PIN and SO PIN
  random, the PIN in the config), keys labelled ``ksk-z<i>-...`` for the i-th zone;
  ``store="file"`` a 0700 key directory ``DIR/owner-ksk/<zone>`` per zone;
- the CDS/CSYNC scanner (:mod:`lab.scanner`; it finds the Knot instances
  through ``lab.json`` like PowerDNS providers: name, ``ns_name``, address, ``dns_port``);
- Unbound, trusting the parent's KSK, with a stub zone per child listing every Knot.

``DIR/multisigner.toml`` (0600) configures every Knot as a provider and every zone as
``model = 1`` signed by the delegated Knots (all by default), with ``[zones.owner_ksk]``
pointing at the store (pkcs11: module, token, literal PIN, ``module_env = {SOFTHSM2_CONF
= ...}``) and short signature times (validity 60 s, refresh 30 s) so re-signing can be
watched. ``DIR/lab.json`` has the shape of
:class:`~lab.Lab`'s (plus ``"model": 1``), so ``Lab.load(DIR).stop()`` and
``multisigner lab down`` stop this lab too.

With ``delegated=["k0", "k1"]`` (say, of three) the other Knots have the zone configured
(offline-KSK, their own ZSK) but are neither in the delegation, nor in any Knot's apex NS
RRset, nor among the zone's ``signers``: ready to join (``multisigner signer add``). Like
every Knot before its first SKR they answer SERVFAIL for the zone until the controller
delivers one -- a ``sync`` delivers to the signers only.

The PKCS#11 key is generated in a child process: loading SoftHSM2 fixes its configuration
for the whole process (see :mod:`providers.kskstore.pkcs11store`), and starting a lab
should not do that to its caller.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import httpx

from providers.kskstore import KeyStoreError, OwnerKskConfig, StoredKey, make_store
from core.owner_ksk import DEFAULT_PKCS11_MODULE
from lab import config, powerdns, provision, zones
from lab.base import LabBase, child_env
from lab.errors import LabError
from lab.knot import KnotInstance
from lab.lab import DEFAULT_ZONES, _refuse_running

Store = Literal["pkcs11", "file"]
TOKEN_LABEL = "multisigner"
SOFTHSM_DIR = "softhsm"
KEY_DIR = "owner-ksk"
_TOOL_TIMEOUT = 60.0

# The controller's policy in the lab: nothing to propagate beyond what the nameservers
# serve, and owner signatures short-lived so that re-signing shows within a test.
POLICY = {
    "propagation_delay": "0s",
    "safety_margin": "1s",
    "signature_validity": "60s",
    "signature_refresh": "30s",
}


@dataclass(frozen=True)
class KnotServer:
    """What a test needs to know about one Knot provider of the lab."""

    name: str  # "k0", ...
    address: str  # its own 127/8 address
    dns_port: int
    ns_name: str  # "ns1.k0.test."
    conf_path: Path  # knot.conf: ``-c`` for knotc/keymgr, ``knot_config`` in the config
    dir: Path

    @property
    def port(self) -> int:
        return self.dns_port

    @property
    def nameserver(self) -> str:
        """``address:port``, the form of ``nameservers`` in multisigner.toml."""
        return f"{self.address}:{self.dns_port}"

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> KnotServer:
        return cls(
            name=str(data["name"]),
            address=str(data["address"]),
            dns_port=int(data["dns_port"]),
            ns_name=str(data["ns_name"]),
            conf_path=Path(data["conf"]),
            dir=Path(data["dir"]),
        )


class Model1Lab(LabBase[KnotServer]):
    """A running (or recorded) Model 1 lab. Build with :meth:`start` or :meth:`load`."""

    # ----------------------------------------------------------------- life cycle

    @classmethod
    def start(
        cls,
        directory: Path,
        providers: int = 2,
        zones: Sequence[str] = DEFAULT_ZONES,
        ttl: int = 2,
        *,
        ds_ttl: int = 2,
        store: Store = "pkcs11",
        scanner: bool = True,
        unbound: bool = True,
        scanner_interval: float = 0.5,
        rrsig_lifetime: str = "14d",
        rrsig_refresh: str = "7d",
        pkcs11_module: str = DEFAULT_PKCS11_MODULE,
        delegated: Sequence[str] | None = None,
    ) -> Model1Lab:
        """Start a Model 1 lab in ``directory`` (created if missing). On any failure,
        whatever was already started is stopped before the error propagates.

        ``rrsig_lifetime``/``rrsig_refresh``: Knot's own signatures (over zone data, made
        with its ZSK); the owner's over the key RRsets come with each SKR. ``delegated``:
        the Knots the zones are delegated to at first (default: all; any non-empty subset,
        the parent's DS names the owner KSK whoever serves): the parent's NS RRsets, every
        Knot's apex NS RRset and the zones' ``signers`` name only them."""
        if providers < 1:
            raise LabError("a Model 1 lab needs at least one Knot provider")
        initial = _delegated_names(providers, delegated)
        if store not in ("pkcs11", "file"):
            raise LabError(f"store must be 'pkcs11' or 'file', not {store!r}")
        if isinstance(zones, str):
            raise LabError(f"zones must be a list of zone names, not {zones!r}")
        directory = directory.resolve()
        directory.mkdir(parents=True, exist_ok=True)
        _refuse_running(directory)
        zone_names = [z if z.endswith(".") else z + "." for z in zones]
        if not zone_names:
            raise LabError("a lab needs at least one zone")
        lab = cls(directory, {"model": 1, "running": True, "processes": [], "socket_dirs": []}, [])
        try:
            lab._build(
                zone_names=zone_names,
                n=providers,
                ttl=ttl,
                ds_ttl=ds_ttl,
                store=store,
                want_scanner=scanner,
                want_unbound=unbound,
                interval=scanner_interval,
                rrsig_lifetime=rrsig_lifetime,
                rrsig_refresh=rrsig_refresh,
                module=pkcs11_module,
                delegated=initial,
            )
        except BaseException:
            with contextlib.suppress(LabError):  # the original error matters more
                lab.stop()
            raise
        return lab

    def _build(
        self,
        *,
        zone_names: list[str],
        n: int,
        ttl: int,
        ds_ttl: int,
        store: Store,
        want_scanner: bool,
        want_unbound: bool,
        interval: float,
        rrsig_lifetime: str,
        rrsig_refresh: str,
        module: str,
        delegated: list[str],
    ) -> None:
        started = time.monotonic()
        names = [f"k{i}" for i in range(n)]
        ns_names = [zones.ns_name(name) for name in delegated]  # the delegation's NS RRset
        self.state.update(
            {
                "directory": str(self.directory),
                "ttl": ttl,
                "ds_ttl": ds_ttl,
                "ns_ttl": ttl,
                "delegated": delegated,  # at start; lab.delegated(zone) asks the parent
                "zones": zone_names,
                "scanner_interval": interval,
                "resolver": None,
            }
        )

        def knot(name: str) -> KnotInstance:
            instance = KnotInstance.create(
                name,
                self.directory / name,
                zones=zone_names,
                ttl=ttl,
                ns_names=ns_names,
                rrsig_lifetime=rrsig_lifetime,
                rrsig_refresh=rrsig_refresh,
            )
            if instance.rundir is not None and not instance.rundir.is_relative_to(instance.dir):
                self._add(socket_dir=instance.rundir)  # long lab path: removed on stop
            try:
                instance.start()
            finally:
                if instance.process is not None:
                    self._add(process=instance.process)
            return instance

        def parent() -> powerdns.PowerDNS:
            server = powerdns.PowerDNS.start("parent", self.directory / "parent")
            self._add(process=server.proc)
            if server.socket_dir != server.directory:
                self._add(socket_dir=server.socket_dir)
            return server

        owner = OwnerKsks(self.directory, zone_names, store, module)
        with ThreadPoolExecutor(n + 2) as pool:
            parent_job = pool.submit(parent)
            knot_jobs = [pool.submit(knot, name) for name in names]
            owner_job = pool.submit(owner.create)
            results, errors = _gather([parent_job, *knot_jobs, owner_job])
        self._save()  # pids on disk as early as possible
        if errors:
            raise errors[0]
        parent_server = results[0]
        knots: list[KnotInstance] = results[1 : 1 + n]
        keys: dict[str, StoredKey] = results[-1]
        assert isinstance(parent_server, powerdns.PowerDNS)

        ds = {z: [zones.ds_text(z, keys[z].dnskey.text)] for z in zone_names}
        with parent_server.client() as client:
            powerdns.create_zone(
                client,
                zones.PARENT_ZONE,
                zones.parent_rrsets(
                    parent_server.address,
                    {zones.ns_name(k.name): k.address for k in knots},
                    {z: ns_names for z in zone_names},
                    ds,
                    ttl=ttl,
                    ds_ttl=ds_ttl,
                    ns_ttl=ttl,
                ),
            )
            parent_keys = powerdns.add_keys(client, zones.PARENT_ZONE, provision.DEFAULT_ALGORITHM)
        self.state.update(
            {
                "parent": {
                    **parent_server.to_json(),
                    "ns_name": zones.PARENT_NS,
                    "trust_anchor": [k.dnskey for k in provision.signing_keys(parent_keys)],
                },
                "providers": [
                    {
                        **k.to_json(),
                        "type": "knot",
                        "ns_name": zones.ns_name(k.name),
                        "algorithm": provision.DEFAULT_ALGORITHM,
                    }
                    for k in knots
                ],
                "owner_ksk": {
                    "store": store,
                    **owner.describe(),
                    "keys": {
                        z: {"key_id": k.key_id, "dnskey": k.dnskey.text, "ds": ds[z][0]}
                        for z, k in keys.items()
                    },
                },
            }
        )
        self._save()
        config.write_private(self.config_path, self._config_toml(owner))
        with ThreadPoolExecutor(2) as pool:
            scan = pool.submit(self._start_scanner) if want_scanner else None
            unb = pool.submit(self._start_unbound) if want_unbound else None
            _, failures = _gather([f for f in (scan, unb) if f is not None])
        self._save()
        if failures:
            raise failures[0]
        self.state["startup_seconds"] = round(time.monotonic() - started, 3)
        self._save()

    def _config_toml(self, owner: OwnerKsks) -> str:
        q, qlist = config._q, config._qlist
        out = [
            "# Written by the multisigner Model 1 lab; the PIN is literal (this file is 0600).",
            "[state]",
            f"url = {q('sqlite:///' + str(self.directory / 'multisigner.db'))}",
            "",
        ]
        for k in self.providers:
            out += [
                "[[providers]]",
                f"name = {q(k.name)}",
                'type = "knot"',
                f"knot_config = {q(str(k.conf_path))}",
                f"nameservers = {qlist([k.nameserver])}",
                f"ns_names = {qlist([k.ns_name])}",
                "",
            ]
        signers = self.initially_delegated
        for index, zone in enumerate(self.zones):
            out += [
                "[[zones]]",
                f"name = {q(zone)}",
                "model = 1",
                f"signers = {qlist(signers)}",
                "",
                "[zones.parent]",
                'type = "cds-scan"',
                f"nameservers = {qlist([self.parent.nameserver])}",
                "",
                "[zones.owner_ksk]",
                *owner.toml_lines(index, zone),
                "",
                "[zones.policy]",
                *(f"{name} = {q(value)}" for name, value in POLICY.items()),
                "",
            ]
        return "\n".join(out)

    @classmethod
    def _check_state(cls, directory: Path, state: dict[str, Any]) -> None:
        """:meth:`load` takes a Model 1 lab's state only."""
        if state.get("model") != 1:
            raise LabError(f"the lab in {directory} is not a Model 1 lab (use Lab.load)")

    # ----------------------------------------------------------------- what tests use

    @property
    def model(self) -> int:
        return 1

    @property
    def providers(self) -> list[KnotServer]:
        """The Knot instances, ``k0`` first."""
        return [KnotServer.from_json(p) for p in self.state.get("providers", [])]

    @property
    def initially_delegated(self) -> list[str]:
        """The Knots the zones were delegated to (and signed by) at start (old state files:
        every Knot); :meth:`delegated` asks the parent what it is now."""
        names = self.state.get("delegated")
        return list(names) if names is not None else [k.name for k in self.providers]

    def provider(self, name: str) -> KnotServer:
        for k in self.providers:
            if k.name == name:
                return k
        raise LabError(f"no Knot provider {name!r} in the lab (have k0..)")

    @property
    def store(self) -> Store:
        kind: Store = self.state["owner_ksk"]["store"]
        return kind

    def owner_ksk(self, zone: str) -> tuple[str, str]:
        """(store key id, DNSKEY text) of the owner KSK the lab made for ``zone``, whose DS
        it registered at the parent."""
        key = self.state["owner_ksk"]["keys"][_fqdn(zone)]
        return str(key["key_id"]), str(key["dnskey"])

    def parent_pdns_api(self) -> httpx.Client:
        """An API client for the parent (``.../servers/localhost``); the caller closes it."""
        p = self.parent
        return powerdns.api_client(p.api_url, p.api_key)


# ---------------------------------------------------------------------- the owner KSKs


class OwnerKsks:
    """The lab's owner-KSK store: made, one KSK per zone generated, described for the
    config. pkcs11: SoftHSM2 token ``multisigner`` in ``DIR/softhsm``; file: one 0700
    directory per zone under ``DIR/owner-ksk``."""

    def __init__(self, directory: Path, zone_names: Sequence[str], store: Store, module: str):
        self.directory = directory
        self.zones = list(zone_names)
        self.store = store
        self.module = module
        self.softhsm_dir = directory / SOFTHSM_DIR
        self.pin = secrets.token_hex(8)

    @property
    def softhsm_conf(self) -> Path:
        return self.softhsm_dir / "softhsm2.conf"

    def config(self, index: int, zone: str) -> OwnerKskConfig:
        """``[zones.owner_ksk]`` of the ``index``-th zone, as the controller will read it."""
        if self.store == "file":
            return OwnerKskConfig(store="file", directory=self.key_dir(zone))
        return OwnerKskConfig.model_validate(
            {
                "store": "pkcs11",
                "module": self.module,
                "token_label": TOKEN_LABEL,
                "pin": self.pin,
                # a prefix per zone: a rollover's new key in one zone is not another's
                "key_label_prefix": f"ksk-z{index}",
                "module_env": {"SOFTHSM2_CONF": str(self.softhsm_conf)},
            }
        )

    def toml_lines(self, index: int, zone: str) -> list[str]:
        c = self.config(index, zone)
        q = config._q
        if c.store == "file":
            return ['store = "file"', f"directory = {q(str(c.directory))}"]
        assert c.token_label is not None and c.pin is not None
        env = ", ".join(f"{q(k)} = {q(v)}" for k, v in c.module_env.items())
        return [
            'store = "pkcs11"',
            f"module = {q(c.module)}",
            f"token_label = {q(c.token_label)}",
            f"pin = {q(c.pin.get_secret_value())}",
            f"key_label_prefix = {q(c.key_label_prefix)}",
            f"module_env = {{ {env} }}",
        ]

    def key_dir(self, zone: str) -> Path:
        return self.directory / KEY_DIR / (zone.rstrip(".") or "root")

    def describe(self) -> dict[str, Any]:
        """For lab.json (no PIN: that is in the 0600 config only)."""
        if self.store == "file":
            return {"directories": {z: str(self.key_dir(z)) for z in self.zones}}
        return {
            "module": self.module,
            "token_label": TOKEN_LABEL,
            "softhsm_conf": str(self.softhsm_conf),
        }

    def create(self) -> dict[str, StoredKey]:
        """The store, and one new KSK per zone in it."""
        configs = [self.config(i, z) for i, z in enumerate(self.zones)]
        if self.store == "file":
            (self.directory / KEY_DIR).mkdir(mode=0o700, exist_ok=True)
            for zone in self.zones:  # the store never makes its directory on the fly
                self.key_dir(zone).mkdir(mode=0o700, exist_ok=True)
                self.key_dir(zone).chmod(0o700)
            return {z: _generate(c) for z, c in zip(self.zones, configs, strict=True)}
        self._init_token()
        return dict(zip(self.zones, _generate_elsewhere(configs), strict=True))

    def _init_token(self) -> None:
        if not os.path.exists(self.module):
            raise LabError(f"the PKCS#11 module {self.module} is missing (apt install softhsm2)")
        util = shutil.which("softhsm2-util")
        if util is None:
            raise LabError("softhsm2-util is missing (apt install softhsm2)")
        tokens = self.softhsm_dir / "tokens"
        if self.softhsm_dir.exists():  # a lab restarted in the same directory: new token
            shutil.rmtree(self.softhsm_dir)
        tokens.mkdir(parents=True, mode=0o700)
        self.softhsm_dir.chmod(0o700)
        self.softhsm_conf.write_text(
            f"directories.tokendir = {tokens}\nobjectstore.backend = file\nlog.level = ERROR\n"
        )
        argv = [
            util,
            "--init-token",
            "--free",
            "--label",
            TOKEN_LABEL,
            "--pin",
            self.pin,
            "--so-pin",
            secrets.token_hex(8),
        ]
        _run(argv, {**os.environ, "SOFTHSM2_CONF": str(self.softhsm_conf)}, "softhsm2-util")


def _generate(owner: OwnerKskConfig) -> StoredKey:
    try:
        with make_store(owner) as store:
            return store.generate()
    except KeyStoreError as exc:
        raise LabError(f"cannot make the lab's owner KSK: {exc}") from exc


def _generate_elsewhere(configs: Sequence[OwnerKskConfig]) -> list[StoredKey]:
    """:func:`_generate` for each config in a child process (``python -m
    lab.model1 generate``; configs with PIN on stdin, keys as JSON on stdout)."""
    from core.keys import Key

    # exclude_unset: the child validates the same fields as set (foreign ones are refused)
    payload = json.dumps(
        [
            c.model_dump(mode="json", exclude_unset=True)
            | ({"pin": c.pin.get_secret_value()} if c.pin else {})
            for c in configs
        ]
    )
    out = _run(
        [sys.executable, "-m", "lab.model1", "generate"],
        child_env(),
        "owner KSK generation",
        stdin=payload,
    )
    try:
        return [StoredKey(str(k["key_id"]), Key.parse(str(k["dnskey"]))) for k in json.loads(out)]
    except (ValueError, KeyError, TypeError) as exc:
        raise LabError(f"owner KSK generation printed {out[:200]!r}: {exc}") from exc


def _run(argv: list[str], env: dict[str, str], what: str, *, stdin: str | None = None) -> str:
    try:
        done = subprocess.run(
            argv,
            input=stdin,
            capture_output=True,
            text=True,
            env=env,
            timeout=_TOOL_TIMEOUT,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise LabError(f"{what}: {exc}") from exc
    if done.returncode != 0:
        raise LabError(
            f"{what} failed (exit {done.returncode}): {(done.stderr or done.stdout).strip()[-800:]}"
        )
    return done.stdout


def _gather(futures: Sequence[Any]) -> tuple[list[Any], list[BaseException]]:
    """Every future's result (None for a failed one) and the exceptions, in order."""
    results: list[Any] = []
    errors: list[BaseException] = []
    for fut in futures:
        try:
            results.append(fut.result())
        except Exception as exc:
            results.append(None)
            errors.append(exc)
    return results, errors


def _delegated_names(providers: int, delegated: Sequence[str] | None) -> list[str]:
    """``delegated`` checked and in provider order (default: every Knot)."""
    names = [f"k{i}" for i in range(providers)]
    if delegated is None:
        return names
    if isinstance(delegated, str):
        raise LabError(f"delegated must be a list of Knot provider names, not {delegated!r}")
    if unknown := sorted(set(delegated) - set(names)):
        raise LabError(f"delegated names unknown providers {unknown} (have {names})")
    if not delegated:
        raise LabError("delegated must name at least one Knot: a zone needs a delegation")
    return [n for n in names if n in delegated]


def _fqdn(zone: str) -> str:
    return zone if zone.endswith(".") else zone + "."


def _main(argv: Sequence[str]) -> int:
    if list(argv) != ["generate"]:
        print(
            "usage: python -m lab.model1 generate  (configs as JSON on stdin)",
            file=sys.stderr,
        )
        return 2
    keys = []
    for item in json.loads(sys.stdin.read()):
        stored = _generate(OwnerKskConfig.model_validate(item))
        keys.append({"key_id": stored.key_id, "dnskey": stored.dnskey.text})
    print(json.dumps(keys))
    return 0


if __name__ == "__main__":
    raise SystemExit(_main(sys.argv[1:]))
