"""Adapters are found through the ``multisigner.providers`` entry-point group: the
built-in ones are registered in pyproject.toml, a third-party package's adapter is picked
by the config's ``type``, and an unknown type or a broken adapter is a config error that
names the type and the installed ones.

The third-party package is a real installed distribution as far as importlib.metadata is
concerned: a ``*.dist-info`` directory with ``entry_points.txt`` on ``sys.path``."""

from __future__ import annotations

import sys
import textwrap
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest

from core.config import load_config
from core.errors import ConfigError
from core.provider_config import BUILTIN_TYPES, PluginProviderConfig
from providers.registry import BUILTIN, adapter_class, build_provider, check_config

REPO = Path(__file__).resolve().parents[2]

ADAPTER = '''
from typing import ClassVar
from pydantic import BaseModel, ConfigDict
from core.observation import ApiZoneState
from providers.base import Capability, Provider

class Settings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    type: str
    nameservers: list[str]
    ns_names: list[str] = []
    timeout: object = None
    endpoint: str

class FakeDnsProvider(Provider):
    capabilities: ClassVar[Capability] = Capability.PUBLISH_CDS
    type_name: ClassVar[str] = "fakedns"
    config_model: ClassVar[type[BaseModel] | None] = Settings

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings.name)
        self.settings = settings

    async def check_access(self) -> None:
        pass

    async def read_zone(self, zone: str) -> ApiZoneState:
        raise NotImplementedError
'''


@pytest.fixture
def third_party(tmp_path: Path) -> Iterator[Path]:
    """An installed package ``fakedns-multisigner`` registering two types: ``fakedns``
    (works) and ``brokendns`` (its module fails to import)."""
    (tmp_path / "fakedns_adapter.py").write_text(ADAPTER)
    (tmp_path / "brokendns_adapter.py").write_text("raise ImportError('libfake.so missing')\n")
    info = tmp_path / "fakedns_multisigner-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: fakedns-multisigner\n"
                                   "Version: 1.0\n")
    (info / "entry_points.txt").write_text(textwrap.dedent("""\
        [multisigner.providers]
        fakedns = fakedns_adapter:FakeDnsProvider
        brokendns = brokendns_adapter:Nothing
        powerdns = fakedns_adapter:FakeDnsProvider
        """))
    sys.path.insert(0, str(tmp_path))
    try:
        yield tmp_path
    finally:
        sys.path.remove(str(tmp_path))
        for name in ("fakedns_adapter", "brokendns_adapter"):
            sys.modules.pop(name, None)


def _config(tmp_path: Path, provider: str) -> Path:
    path = tmp_path / "ms.toml"
    path.write_text(provider + textwrap.dedent("""
        [[zones]]
        name = "example.test"
        model = 2
        signers = ["x"]
        """))
    return path


def test_pyproject_registers_exactly_the_builtin_adapters() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert project["entry-points"]["multisigner.providers"] == BUILTIN
    assert set(BUILTIN) == set(BUILTIN_TYPES)


@pytest.mark.parametrize("kind", sorted(BUILTIN))
def test_every_builtin_adapter_loads_and_names_its_type(kind: str) -> None:
    assert adapter_class(kind).type_name == kind


def test_an_unknown_type_is_a_config_error_naming_the_installed_ones(tmp_path: Path) -> None:
    path = _config(tmp_path, '[[providers]]\nname = "x"\ntype = "route66"\n'
                             'nameservers = ["127.0.0.1"]\n')
    with pytest.raises(ConfigError) as err:
        load_config(path)
    text = str(err.value)
    assert "providers[0].type: unknown provider type 'route66'" in text
    assert "installed: cloudflare, desec, knot, ns1, powerdns, rfc2136, route53" in text
    assert "multisigner.providers" in text


def test_a_third_party_adapter_is_chosen_by_type(third_party: Path, tmp_path: Path) -> None:
    path = _config(tmp_path, '[[providers]]\nname = "x"\ntype = "fakedns"\n'
                             'nameservers = ["127.0.0.1"]\nendpoint = "https://fake.example"\n')
    config = load_config(path)
    check_config(list(config.providers))
    provider = build_provider(config.provider("x"))
    assert provider.type_name == "fakedns"
    assert provider.__class__.__module__ == "fakedns_adapter"
    assert provider.settings.endpoint == "https://fake.example"  # type: ignore[attr-defined]


def test_a_third_party_adapter_validates_its_own_keys(third_party: Path,
                                                      tmp_path: Path) -> None:
    path = _config(tmp_path, '[[providers]]\nname = "x"\ntype = "fakedns"\n'
                             'nameservers = ["127.0.0.1"]\nendpont = "typo"\n')
    config = load_config(path)  # core knows only the common keys
    with pytest.raises(ConfigError) as err:
        check_config(list(config.providers))
    assert "'x' (type 'fakedns')" in str(err.value)
    assert "endpoint: Field required" in str(err.value)
    assert "endpont: Extra inputs are not permitted" in str(err.value)


def test_an_adapter_that_fails_to_load_is_a_config_error(third_party: Path,
                                                         tmp_path: Path) -> None:
    config = PluginProviderConfig(name="b", type="brokendns", nameservers=["127.0.0.1"])
    with pytest.raises(ConfigError) as err:
        build_provider(config)
    text = str(err.value)
    assert "provider type 'brokendns'" in text
    assert "brokendns_adapter:Nothing failed to load (ImportError: libfake.so missing)" in text
    assert "Installed types: brokendns, cloudflare, desec, fakedns, knot" in text


def test_a_package_cannot_take_over_a_builtin_type(third_party: Path) -> None:
    assert adapter_class("powerdns").__module__ == "providers.powerdns"


def test_the_installed_list_names_third_party_types(third_party: Path,
                                                    tmp_path: Path) -> None:
    path = _config(tmp_path, '[[providers]]\nname = "x"\ntype = "nope"\n'
                             'nameservers = ["127.0.0.1"]\n')
    with pytest.raises(ConfigError, match=r"installed: brokendns, cloudflare, desec, "
                                          r"fakedns, knot, ns1, powerdns, rfc2136, route53"):
        load_config(path)
