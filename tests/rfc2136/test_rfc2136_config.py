"""``[[providers]] type = "rfc2136"`` in the config file: parsed into its model through the
discriminated union, the secret from the environment, and clear errors for bad values."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from core.config import Rfc2136ProviderConfig, load_config
from core.errors import ConfigError
from providers import build_provider
from providers.base import Capability
from providers.rfc2136 import Rfc2136Provider

SECRET = "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LXNlY3I="


def write(tmp_path: Path, **fields: str) -> Path:
    values = {"server": '"127.0.0.1:5303"', "tsig_name": '"u0-update"',
              "tsig_algorithm": '"hmac-sha384"', "tsig_secret": '"${U0_TSIG}"', **fields}
    lines = ["[[providers]]", 'name = "u0"', 'type = "rfc2136"',
             *(f"{k} = {v}" for k, v in values.items() if v),
             'nameservers = ["127.0.0.1:5303"]', 'ns_names = ["ns1.u0.test."]']
    path = tmp_path / "multisigner.toml"
    path.write_text("\n".join(lines) + "\n")
    path.chmod(0o600)
    return path


def test_parsed_and_built(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("U0_TSIG", SECRET)
    config = load_config(write(tmp_path))
    provider = config.provider("u0")
    assert isinstance(provider, Rfc2136ProviderConfig)
    assert provider.tsig_name == "u0-update."
    assert provider.tsig_algorithm == "hmac-sha384"
    assert provider.tsig_secret.get_secret_value() == SECRET
    adapter = build_provider(provider)
    assert isinstance(adapter, Rfc2136Provider)
    assert adapter.can(Capability.IMPORT_FOREIGN_DNSKEY | Capability.PUBLISH_CDS
                       | Capability.MANAGE_NS)
    assert not adapter.can(Capability.GENERATE_KEYS)
    assert adapter.keys_from_signatures  # its successors are told apart by the controller
    assert provider.prepublish_window is None


def test_prepublish_window(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("U0_TSIG", SECRET)
    provider = load_config(write(tmp_path, prepublish_window='"1h5m"')).provider("u0")
    assert isinstance(provider, Rfc2136ProviderConfig)
    assert provider.prepublish_window == timedelta(hours=1, minutes=5)


@pytest.mark.parametrize(("fields", "message"), [
    ({"tsig_secret": '"not base64!"'}, "tsig_secret"),
    ({"tsig_secret": '""'}, "tsig_secret"),
    ({"tsig_algorithm": '"hmac-md5"'}, "tsig_algorithm"),
    ({"server": '"127.0.0.1:99999"'}, "server"),
    ({"tsig_name": ""}, "tsig_name"),
    ({"prepublish_window": '"soon"'}, "prepublish_window"),
])
def test_bad_values_are_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                              fields: dict[str, str], message: str) -> None:
    monkeypatch.setenv("U0_TSIG", SECRET)
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, **fields))
    assert f"providers[0].{message}" in str(err.value), str(err.value)
