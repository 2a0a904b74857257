"""Config for Model 1: Knot providers and the zone owner's KSK store."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.config import KnotProviderConfig, load_config
from core.errors import ConfigError

BASE = """
[[providers]]
name = "k0"
type = "knot"
knot_config = "/etc/knot/knot.conf"
nameservers = ["127.0.0.1:5302"]

[[providers]]
name = "p0"
type = "powerdns"
api_url = "http://127.0.0.1:8081"
api_key = "k"
nameservers = ["127.0.0.1:5301"]

[[zones]]
name = "example.test."
model = MODEL
signers = ["k0"]
"""
OWNER = """
[zones.owner_ksk]
store = "file"
directory = "/var/lib/multisigner/keys"
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "multisigner.toml"
    path.write_text(text)
    return path


def test_model1_zone_with_knot_provider_and_file_store(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, BASE.replace("MODEL", "1") + OWNER))
    assert isinstance(config.provider("k0"), KnotProviderConfig)
    zone = config.zone("example.test.")
    assert zone.owner_ksk is not None and zone.owner_ksk.store == "file"


def test_model1_without_owner_ksk_names_the_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, BASE.replace("MODEL", "1")))
    assert "zones[0]" in str(err.value) and "owner_ksk" in str(err.value)


def test_model2_with_owner_ksk_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, BASE.replace("MODEL", "2") + OWNER))
    assert "only model 1 zones have an owner KSK" in str(err.value)


def test_owner_ksk_algorithm_must_match_policy(tmp_path: Path) -> None:
    text = BASE.replace("MODEL", "1") + OWNER + 'algorithm = "ED25519"\n'
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, text))
    assert "differs from policy.algorithm" in str(err.value)


def test_knot_provider_error_path_has_no_union_tag(tmp_path: Path) -> None:
    text = BASE.replace("MODEL", "1").replace('nameservers = ["127.0.0.1:5302"]',
                                              "nameservers = []") + OWNER
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, text))
    assert "providers[0].nameservers:" in str(err.value)
