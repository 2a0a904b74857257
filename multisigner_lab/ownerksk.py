"""The owner KSK store of the Model 1 lab: made, one KSK per zone generated in it, and
described for the controller's config.

``store="pkcs11"``: a SoftHSM2 token ``multisigner`` in ``DIR/softhsm`` with its own
``softhsm2.conf`` (PIN and SO PIN random; the PIN goes into the 0600 config only), keys
labelled ``ksk-z<i>-...`` for the i-th zone. ``store="file"``: a 0700 key directory
``DIR/owner-ksk/<zone>`` per zone.

The PKCS#11 keys are generated in a child process (``python -m multisigner_lab.ownerksk generate``):
loading SoftHSM2 fixes its configuration for the whole process (see
:mod:`providers.kskstore.pkcs11store`), and starting a lab should not do that to its caller.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from core.keys import Key
from multisigner_lab import config, proc
from multisigner_lab.errors import LabError
from multisigner_lab.proc import child_env
from providers.kskstore import KeyStoreError, OwnerKskConfig, StoredKey, make_store

Store = Literal["pkcs11", "file"]
TOKEN_LABEL = "multisigner"
SOFTHSM_DIR = "softhsm"
KEY_DIR = "owner-ksk"
_TOOL_TIMEOUT = 60.0


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
        q = config.toml_str
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
        env = {**os.environ, "SOFTHSM2_CONF": str(self.softhsm_conf)}
        proc.run_tool(argv, "softhsm2-util", timeout=_TOOL_TIMEOUT, env=env)


def _generate(owner: OwnerKskConfig) -> StoredKey:
    try:
        with make_store(owner) as store:
            return store.generate()
    except KeyStoreError as exc:
        raise LabError(f"cannot make the lab's owner KSK: {exc}") from exc


def _generate_elsewhere(configs: Sequence[OwnerKskConfig]) -> list[StoredKey]:
    """:func:`_generate` for each config in a child process (``python -m
    lab.ownerksk generate``; configs with PIN on stdin, keys as JSON on stdout)."""
    # exclude_unset: the child validates the same fields as set (foreign ones are refused)
    payload = json.dumps(
        [
            c.model_dump(mode="json", exclude_unset=True)
            | ({"pin": c.pin.get_secret_value()} if c.pin else {})
            for c in configs
        ]
    )
    out = proc.run_tool(
        [sys.executable, "-m", "multisigner_lab.ownerksk", "generate"],
        "owner KSK generation",
        timeout=_TOOL_TIMEOUT,
        env=child_env(),
        stdin=payload,
    )
    try:
        return [StoredKey(str(k["key_id"]), Key.parse(str(k["dnskey"]))) for k in json.loads(out)]
    except (ValueError, KeyError, TypeError) as exc:
        raise LabError(f"owner KSK generation printed {out[:200]!r}: {exc}") from exc


def _main(argv: Sequence[str]) -> int:
    if list(argv) != ["generate"]:
        print(
            "usage: python -m multisigner_lab.ownerksk generate  (configs as JSON on stdin)",
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
