"""[zones.parent]: type = "dsync" (the SIG(0) key directory and algorithm) and type =
"route53domains" (the registered domain, region, profile), validated at load."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_config import FULL, SECRET, load_error, problems, write

from core.config import load_config

CDS_SCAN = 'type = "cds-scan"\nnameservers = ["127.0.0.1:5300"]\n'


@pytest.fixture(autouse=True)
def _env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("P0_API_KEY", SECRET)


def _with_parent(tmp_path: Path, parent: str) -> Path:
    assert CDS_SCAN in FULL
    return write(tmp_path, FULL.replace(CDS_SCAN, parent, 1))


def test_dsync_parent(tmp_path: Path) -> None:
    path = _with_parent(tmp_path, 'type = "dsync"\nnameservers = ["127.0.0.1:5300"]\n'
                                  'sig0_directory = "/var/lib/multisigner/sig0"\n'
                                  'sig0_algorithm = "ed25519"\n')
    parent = load_config(path).zones[0].parent
    assert parent.type == "dsync"
    assert parent.sig0_directory == Path("/var/lib/multisigner/sig0")
    assert parent.sig0_algorithm == "ED25519"


def test_dsync_defaults(tmp_path: Path) -> None:
    path = _with_parent(tmp_path, 'type = "dsync"\nsig0_directory = "/srv/sig0"\n')
    parent = load_config(path).zones[0].parent
    assert parent.sig0_algorithm == "ECDSAP256SHA256" and parent.nameservers == []


def test_route53domains_parent(tmp_path: Path) -> None:
    path = _with_parent(tmp_path, 'type = "route53domains"\ndomain = "Example.Test."\n'
                                  'profile = "registrar"\n')
    parent = load_config(path).zones[0].parent
    assert (parent.type, parent.domain, parent.region, parent.profile) == (
        "route53domains", "example.test", "us-east-1", "registrar")
    assert parent.registered_domain("example.test.") == "example.test"


def test_route53domains_domain_defaults_to_the_zone(tmp_path: Path) -> None:
    zone = load_config(_with_parent(tmp_path, 'type = "route53domains"\n')).zones[0]
    assert zone.parent.domain is None
    assert zone.parent.registered_domain(zone.name) == zone.name.rstrip(".")


def test_cds_scan_is_unchanged(tmp_path: Path) -> None:
    parent = load_config(write(tmp_path, FULL)).zones[0].parent
    assert parent.type == "cds-scan" and parent.sig0_directory is None


@pytest.mark.parametrize(("parent", "expected"), [
    ('type = "dsync"\n', 'zones[0].parent: sig0_directory: type = "dsync" needs the '
                         "directory of the zone's SIG(0) keys"),
    ('type = "cds-scan"\nsig0_directory = "/srv/sig0"\n',
     'zones[0].parent: sig0_directory and sig0_algorithm apply to type = "dsync" only'),
    ('type = "cds-scan"\nsig0_algorithm = "ED25519"\n',
     'zones[0].parent: sig0_directory and sig0_algorithm apply to type = "dsync" only'),
    ('type = "dsync"\nsig0_directory = "/srv/sig0"\nsig0_algorithm = "RSASHA256"\n',
     "zones[0].parent.sig0_algorithm: 'RSASHA256' is not a SIG(0) key algorithm; use one "
     "of ECDSAP256SHA256, ECDSAP384SHA384, ED25519"),
    ('type = "dsync"\nsig0_directory = "/srv/sig0"\nsig0_dir = "/x"\n',
     "zones[0].parent.sig0_dir: unknown key"),
    ('type = "carrier-pigeon"\n', "zones[0].parent.type: Input should be 'cds-scan', "
                                  "'dsync' or 'route53domains'"),
    ('type = "route53domains"\ndomain = "example.org"\n',
     "zones[0]: parent.domain: 'example.org' is not the zone example.test.; the registrar "
     "holds the DS of the registered domain itself"),
    ('type = "route53domains"\ndomain = "exa mple"\n',
     "zones[0].parent.domain: 'exa mple' is not a registered domain name"),
    ('type = "cds-scan"\ndomain = "example.test"\n',
     'zones[0].parent: domain, region and profile apply to type = "route53domains" only, '
     'not to type = "cds-scan"'),
    ('type = "dsync"\nsig0_directory = "/srv/sig0"\nregion = "eu-west-1"\n',
     'zones[0].parent: domain, region and profile apply to type = "route53domains" only'),
    ('type = "route53domains"\nsig0_directory = "/srv/sig0"\n',
     'zones[0].parent: sig0_directory and sig0_algorithm apply to type = "dsync" only'),
])
def test_parent_errors(tmp_path: Path, parent: str, expected: str) -> None:
    path = _with_parent(tmp_path, parent)
    message = str(load_error(path))
    assert any(p.startswith(expected) for p in problems(message)), message
