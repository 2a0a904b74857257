"""``owner_ksk.module_env``: environment variables a PKCS#11 module reads when it is
initialized (SoftHSM2: ``SOFTHSM2_CONF``), set by the store before loading it.

Two SoftHSM2 configurations, each with its own token directory and one token (``tok-a``
only in A, ``tok-b`` only in B), tell which configuration the module was initialized with.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pkcs11
import pytest
from prereq import needs
from pydantic import ValidationError

from providers.kskstore import KeyStoreError, OwnerKskConfig, make_store
from providers.kskstore.pkcs11store import Pkcs11KskStore

MODULE = "/usr/lib/softhsm/libsofthsm2.so"
PIN = "1234"
REPO = Path(__file__).resolve().parents[2]

NEEDS_SOFTHSM = needs("softhsm2-util", files=[MODULE], what="Debian package softhsm2")


# ------------------------------------------------------------------------ configuration


def test_module_env_is_a_pkcs11_setting() -> None:
    config = OwnerKskConfig.model_validate(
        {
            "store": "pkcs11",
            "token_label": "t",
            "pin": PIN,
            "module_env": {"SOFTHSM2_CONF": "/etc/softhsm/softhsm2.conf"},
        }
    )
    assert config.module_env == {"SOFTHSM2_CONF": "/etc/softhsm/softhsm2.conf"}
    plain = OwnerKskConfig.model_validate({"store": "pkcs11", "token_label": "t", "pin": PIN})
    assert plain.module_env == {}


@pytest.mark.parametrize(
    ("table", "error"),
    [
        (
            {"store": "file", "directory": "/k", "module_env": {"A": "1"}},
            "module_env \\(only for store = 'pkcs11'\\)",
        ),
        (
            {"store": "pkcs11", "token_label": "t", "pin": PIN, "module_env": {"1A": "x"}},
            "not an environment variable name",
        ),
        (
            {"store": "pkcs11", "token_label": "t", "pin": PIN, "module_env": {"A=B": "x"}},
            "not an environment variable name",
        ),
        (
            {"store": "pkcs11", "token_label": "t", "pin": PIN, "module_env": {"A": "x\0"}},
            "NUL",
        ),
    ],
)
def test_module_env_refused(table: dict[str, Any], error: str) -> None:
    with pytest.raises(ValidationError, match=error):
        OwnerKskConfig.model_validate(table)


# --------------------------------------------------------------------- against SoftHSM2


@dataclass(frozen=True)
class Hsm:
    conf: str
    token: str

    def store(self, prefix: str = "env") -> Pkcs11KskStore:
        return Pkcs11KskStore(
            module=MODULE,
            token_label=self.token,
            pin=PIN,
            key_label_prefix=prefix,
            module_env={"SOFTHSM2_CONF": self.conf},
        )


def make_hsm(directory: Path, token: str) -> Hsm:
    (directory / "tokens").mkdir(parents=True)
    conf = directory / "softhsm2.conf"
    conf.write_text(
        f"directories.tokendir = {directory / 'tokens'}\nobjectstore.backend = file\n"
        "log.level = ERROR\n"
    )
    subprocess.run(
        [
            *("softhsm2-util", "--init-token", "--free", "--label", token),
            *("--pin", PIN, "--so-pin", "5678"),
        ],
        check=True,
        capture_output=True,
        env={**os.environ, "SOFTHSM2_CONF": str(conf)},
    )
    return Hsm(str(conf), token)


@pytest.fixture
def hsms(tmp_path: Path) -> Iterator[tuple[Hsm, Hsm]]:
    """Two SoftHSM2 configurations. Afterwards SOFTHSM2_CONF and the module are as before
    (other tests of this worker use their own token)."""
    before = os.environ.get("SOFTHSM2_CONF")
    yield make_hsm(tmp_path / "a", "tok-a"), make_hsm(tmp_path / "b", "tok-b")
    if before is None:
        os.environ.pop("SOFTHSM2_CONF", None)
    else:
        os.environ["SOFTHSM2_CONF"] = before
    if MODULE in pkcs11._loaded:
        pkcs11.lib(MODULE).reinitialize()


@NEEDS_SOFTHSM
@pytest.mark.lab
def test_module_env_selects_the_configuration(hsms: tuple[Hsm, Hsm]) -> None:
    a, b = hsms
    with a.store() as first:
        assert os.environ["SOFTHSM2_CONF"] == a.conf
        key = first.generate()
        # the same values while the module is in use: fine, one shared login
        with a.store() as second:
            assert [k.key_id for k in second.list_keys()] == [key.key_id]
        # other values while a store is open: refused, nothing changed
        with pytest.raises(KeyStoreError, match="already loaded in this process") as caught:
            b.store()
        assert a.conf in str(caught.value) and b.conf in str(caught.value)
        assert os.environ["SOFTHSM2_CONF"] == a.conf
        assert [k.key_id for k in first.list_keys()] == [key.key_id]  # still usable
    # no store open any more: the module is re-initialized with B's configuration
    with b.store() as other:
        assert os.environ["SOFTHSM2_CONF"] == b.conf
        assert other.list_keys() == []  # tok-b exists only in B
    # and back, through make_store and [zones.owner_ksk]
    config = OwnerKskConfig.model_validate(
        {
            "store": "pkcs11",
            "token_label": a.token,
            "pin": PIN,
            "key_label_prefix": "env",
            "module_env": {"SOFTHSM2_CONF": a.conf},
        }
    )
    with make_store(config) as again:
        assert [k.key_id for k in again.list_keys()] == [key.key_id]


@NEEDS_SOFTHSM
@pytest.mark.lab
def test_module_env_changed_behind_the_stores_back(hsms: tuple[Hsm, Hsm]) -> None:
    """Someone else points SOFTHSM2_CONF elsewhere and re-initializes the module (as the
    tests/kskstore fixture does): the next store with module_env re-initializes it again."""
    a, b = hsms
    with a.store():
        pass
    os.environ["SOFTHSM2_CONF"] = b.conf
    pkcs11.lib(MODULE).reinitialize()
    with a.store() as store:
        assert os.environ["SOFTHSM2_CONF"] == a.conf
        assert store.token_label == "tok-a" and store.list_keys() == []


@NEEDS_SOFTHSM
@pytest.mark.lab
def test_module_env_applies_before_the_first_load(hsms: tuple[Hsm, Hsm]) -> None:
    """In a fresh process without SOFTHSM2_CONF, module_env alone finds the token."""
    a, _ = hsms
    script = (
        "import json, os, sys\n"
        "from providers.kskstore import OwnerKskConfig, make_store\n"
        "assert 'SOFTHSM2_CONF' not in os.environ\n"
        "config = OwnerKskConfig.model_validate(json.loads(sys.argv[1]))\n"
        "with make_store(config) as store:\n"
        "    print(json.dumps([store.generate().dnskey.text, os.environ['SOFTHSM2_CONF']]))\n"
    )
    table = {
        "store": "pkcs11",
        "token_label": a.token,
        "pin": PIN,
        "module_env": {"SOFTHSM2_CONF": a.conf},
    }
    env = {k: v for k, v in os.environ.items() if k != "SOFTHSM2_CONF"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    done = subprocess.run(
        [sys.executable, "-c", script, json.dumps(table)],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    dnskey, seen = json.loads(done.stdout)
    assert dnskey.startswith("257 3 13 ") and seen == a.conf
