"""The ``route53domains`` parent channel where moto covers Route 53 Domains: a domain
registered in the account or not (``check``), and the domain's name servers
(UpdateDomainNameservers, GetDomainDetail ``Nameservers``, GetOperationDetail). The client
is the real one ``make_client`` builds, under moto's ``mock_aws``. moto 5.2 does not
implement the DS association calls: those are in test_route53domains.py (Stubber)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any, cast

import boto3
import dns.name
import pytest
from moto import mock_aws

from core.config import ParentConfig, ZoneConfig
from core.errors import Refused
from core.observation import ParentView, ZoneView
from orchestrator.engine.registrar_channel import Route53DomainsChannel
from orchestrator.registrar_checks import route53domains_check
from orchestrator.runtime import Runtime

ZONE = "example.com."
CONTACT = {"FirstName": "Ann", "LastName": "Operator", "ContactType": "PERSON",
           "OrganizationName": "Example", "AddressLine1": "1 Main St", "City": "Springfield",
           "State": "NY", "CountryCode": "US", "ZipCode": "10001",
           "PhoneNumber": "+1.5555555555", "Email": "hostmaster@example.com"}


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """moto's AWS with example.com registered; the client the test itself uses."""
    for name, value in (("AWS_ACCESS_KEY_ID", "testing"), ("AWS_SECRET_ACCESS_KEY", "testing"),
                        ("AWS_DEFAULT_REGION", "eu-west-1")):
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    with mock_aws():
        client = boto3.client("route53domains", region_name="us-east-1")
        # moto checks the expiry is more than a year ahead after computing it: 2 years
        client.register_domain(DomainName="example.com", DurationInYears=2,
                               AdminContact=CONTACT, RegistrantContact=CONTACT,
                               TechContact=CONTACT)
        yield client


def _zone(name: str = ZONE) -> ZoneConfig:
    return ZoneConfig(name=name, model=2, signers=["p0"],
                      parent=ParentConfig(type="route53domains"))


def _view(ns: set[str]) -> ZoneView:
    return ZoneView(dns.name.from_text(ZONE), (), (
        ParentView("127.0.0.1:5300", datetime.now(UTC), ns=frozenset(ns)),))


def _channel() -> Route53DomainsChannel:
    # The channel keeps the engine's Runtime for symmetry with dsync; it never uses it.
    return Route53DomainsChannel(cast(Runtime, None), _zone())


def nudge(channel: Route53DomainsChannel, ns: set[str], served: set[str]) -> list[str]:
    return asyncio.run(channel.nudge(None, frozenset(ns), _view(served)))


def _listed(client: Any) -> dict[str, list[str]]:
    detail = client.get_domain_detail(DomainName="example.com")
    return {n["Name"]: n.get("GlueIps", []) for n in detail["Nameservers"]}


def test_check_reads_a_registered_domain(aws: Any) -> None:
    item = asyncio.run(route53domains_check(_zone()))
    assert item["ok"] is True, item
    assert item["notes"] == ["the registrar holds DS: none"]


def test_check_names_a_domain_not_in_the_account(aws: Any) -> None:
    item = asyncio.run(route53domains_check(_zone("example.org.")))
    assert item["ok"] is False
    assert item["problems"][0].startswith(
        "provider 'route53domains', zone example.org., GetDomainDetail: domain example.org "
        "is not registered with Route 53 Domains in this AWS account")


def test_name_servers_replaced_in_one_operation_then_left_alone(aws: Any) -> None:
    want = {"ns1.p0.example.net.", "ns1.p1.example.net."}
    channel = _channel()
    said = nudge(channel, want, {"ns1.p0.example.net."})
    assert len(said) == 1 and said[0].startswith(
        "sent UPDATE_NAMESERVER to ns1.p0.example.net., ns1.p1.example.net. at Route 53 "
        "Domains for example.com: operation ")
    assert said[0].endswith(" SUCCESSFUL")
    assert _listed(aws) == {"ns1.p0.example.net": [], "ns1.p1.example.net": []}
    operations = len(aws.list_operations()["Operations"])
    for fresh in (channel, _channel()):  # a new channel reads the registrar afresh
        said = nudge(fresh, want, {"ns1.p0.example.net."})  # the registry lags
        assert said == ["Route 53 Domains lists name servers ns1.p0.example.net., "
                        "ns1.p1.example.net.; waiting for the registry to publish them"]
    assert len(aws.list_operations()["Operations"]) == operations
    assert nudge(channel, want, want) == []  # the parent serves them: nothing asked


def test_glue_is_never_invented(aws: Any) -> None:
    """A new name server inside the domain has no glue the registrar holds: refused,
    nothing sent. (Keeping the glue of a listed one is in test_route53domains.py: moto
    takes one UPDATE_NAMESERVER per domain, treating any later one as DuplicateRequest.)"""
    aws.update_domain_nameservers(DomainName="example.com", Nameservers=[
        {"Name": "ns1.example.com", "GlueIps": ["192.0.2.1"]},
        {"Name": "ns1.p0.example.net"}])
    before = _listed(aws)
    with pytest.raises(Refused, match=r"ns2.example.com. lie inside example.com and need "
                                      "glue addresses"):
        nudge(_channel(), {"ns1.example.com.", "ns2.example.com."}, set())
    assert _listed(aws) == before == {"ns1.example.com": ["192.0.2.1"],
                                      "ns1.p0.example.net": []}
