"""The ``route53domains`` parent channel (orchestrator/engine/registrar_channel.py) and its
client (providers/registrar/route53domains.py) against botocore's Stubber.

moto 5.2 implements Route 53 Domains registration, name servers and operations but not
AssociateDelegationSignerToDomain / DisassociateDelegationSignerFromDomain (and its
GetDomainDetail has no DnssecKeys), so the registrar is played by botocore's Stubber with
the documented shapes: the Stubber checks every request's parameters, and every stubbed
response, against the ``route53domains`` 2014-05-15 service model, and the order of the
calls is the order stubbed (an unexpected call fails the test).
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any, cast

import boto3
import dns.dnssec
import dns.name
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rrset
import pytest
from botocore.stub import Stubber
from cryptography.hazmat.primitives.asymmetric import ec

from core.config import ParentConfig, ZoneConfig
from core.errors import ProviderAuthError, ProviderError, Refused
from core.keys import Key
from core.observation import ParentView, SignedRRset, ZoneView
from orchestrator.engine.registrar_channel import Route53DomainsChannel
from orchestrator.registrar_checks import route53domains_check
from orchestrator.runtime import Runtime
from providers.registrar import Route53Domains

ZONE = "example.com."
DOMAIN = "example.com"


def _ksk() -> Key:
    private = ec.generate_private_key(ec.SECP256R1())
    rdata = dns.dnssec.make_dnskey(private.public_key(), dns.dnssec.Algorithm.ECDSAP256SHA256,
                                   flags=257)
    return Key.from_rdata(rdata)


OLD, NEW = _ksk(), _ksk()


def _entry(key: Key, ds_id: str) -> dict[str, Any]:
    """A DnssecKeys entry as GetDomainDetail returns it now (no Flags/PublicKey)."""
    ds = key.ds(ZONE)
    tag, alg, dtype, digest = ds.text.split(" ")
    return {"Id": ds_id, "KeyTag": int(tag), "Algorithm": int(alg), "DigestType": int(dtype),
            "Digest": digest.lower()}


def _attributes(key: Key) -> dict[str, Any]:
    return {"Flags": 257, "Algorithm": 13,
            "PublicKey": base64.b64encode(key.rdata.key).decode()}


class Registrar:
    """A stubbed route53domains client and the Route53Domains over it; ``sleeps`` records
    every back-off and poll pause (nothing really waits)."""

    def __init__(self) -> None:
        self.client = boto3.client("route53domains", region_name="us-east-1",
                                   aws_access_key_id="AKIDTEST", aws_secret_access_key="x")
        self.stub = Stubber(self.client)
        self.sleeps: list[float] = []

        async def sleep(seconds: float) -> None:
            self.sleeps.append(seconds)

        self.api = Route53Domains(self.client, DOMAIN, zone=ZONE, sleep=sleep)

    def detail(self, *entries: dict[str, Any]) -> None:
        self.stub.add_response("get_domain_detail",
                               {"DomainName": DOMAIN, "DnssecKeys": list(entries)},
                               {"DomainName": DOMAIN})

    def associate(self, key: Key, operation: str) -> None:
        self.stub.add_response("associate_delegation_signer_to_domain",
                               {"OperationId": operation},
                               {"DomainName": DOMAIN, "SigningAttributes": _attributes(key)})

    def disassociate(self, ds_id: str, operation: str) -> None:
        self.stub.add_response("disassociate_delegation_signer_from_domain",
                               {"OperationId": operation},
                               {"DomainName": DOMAIN, "Id": ds_id})

    def status(self, operation: str, status: str, message: str = "",
               kind: str = "ADD_DNSSEC") -> None:
        answer: dict[str, Any] = {"OperationId": operation, "Status": status,
                                  "DomainName": DOMAIN, "Type": kind}
        if message:
            answer["Message"] = message
        self.stub.add_response("get_operation_detail", answer, {"OperationId": operation})

    def error(self, method: str, code: str, message: str, status: int = 400) -> None:
        self.stub.add_client_error(method, service_error_code=code, service_message=message,
                                   http_status_code=status)


@pytest.fixture
def registrar() -> Iterator[Registrar]:
    made = Registrar()
    with made.stub:
        yield made
        made.stub.assert_no_pending_responses()


def _zone() -> ZoneConfig:
    return ZoneConfig(name=ZONE, model=2, signers=["p0"],
                      parent=ParentConfig(type="route53domains", domain=DOMAIN,
                                          nameservers=["127.0.0.1:5300"]))


def _channel(registrar: Registrar, wait: float = 60.0) -> Route53DomainsChannel:
    # The channel keeps the engine's Runtime for symmetry with dsync; it never uses it.
    return Route53DomainsChannel(cast(Runtime, None), _zone(), registrar.api,
                                 operation_wait=wait)


def _view(*served: Key) -> ZoneView:
    """The parent's one server serving DS for *served* (none: no DS RRset)."""
    ds = None
    if served:
        rrset = dns.rrset.from_text_list(ZONE, 3600, "IN", "DS",
                                         [k.ds(ZONE).text for k in served])
        ds = SignedRRset(rrset, None)
    return ZoneView(dns.name.from_text(ZONE), (),
                    (ParentView("127.0.0.1:5300", datetime.now(UTC), ds=ds),))


def nudge(channel: Route53DomainsChannel, want: set[Key], view: ZoneView) -> list[str]:
    return asyncio.run(channel.nudge(frozenset(want), None, view))


def test_add_before_remove_each_awaited(registrar: Registrar) -> None:
    """OLD's DS at the registrar, NEW wanted: NEW is associated and its operation followed
    to SUCCESSFUL, the registrar re-read, and only then OLD's DS disassociated."""
    registrar.detail(_entry(OLD, "ds-old"))
    registrar.associate(NEW, "op-add")
    registrar.status("op-add", "SUBMITTED")
    registrar.status("op-add", "IN_PROGRESS")
    registrar.status("op-add", "SUCCESSFUL")
    registrar.detail(_entry(OLD, "ds-old"), _entry(NEW, "ds-new"))
    registrar.disassociate("ds-old", "op-remove")
    registrar.status("op-remove", "SUCCESSFUL", kind="REMOVE_DNSSEC")
    said = nudge(_channel(registrar), {NEW}, _view(OLD))
    sent = [line for line in said if line.startswith("sent")]
    assert len(sent) == 2 == len(said)
    assert sent[0].startswith(f"sent ADD_DNSSEC for KSK {NEW.key_tag} (DS {NEW.ds(ZONE).text})")
    assert sent[0].endswith("operation op-add SUCCESSFUL")
    assert sent[1].startswith(f"sent REMOVE_DNSSEC of DS {OLD.ds(ZONE).text} (id ds-old)")
    assert registrar.sleeps == [1.0, 2.0]  # polled, backing off


def test_nothing_removed_while_the_registrar_does_not_list_the_new_ds(
        registrar: Registrar) -> None:
    registrar.detail(_entry(OLD, "ds-old"))
    registrar.associate(NEW, "op-add")
    registrar.status("op-add", "SUCCESSFUL")
    registrar.detail(_entry(OLD, "ds-old"))  # not listed yet, though SUCCESSFUL
    said = nudge(_channel(registrar), {NEW}, _view(OLD))
    assert said[0].startswith("sent ADD_DNSSEC")
    assert f"does not list a DS for KSK(s) {NEW.key_tag} yet" in said[1]
    assert len(said) == 2  # no REMOVE_DNSSEC


def test_idempotent(registrar: Registrar) -> None:
    """The registrar already holds exactly the wanted DS: one read, nothing sent; the next
    nudge within RECHECK_SECONDS asks nothing (the Stubber fails on any further call); a
    parent that serves the DS asks nothing either."""
    registrar.detail(_entry(OLD, "ds-old"), _entry(NEW, "ds-new"))
    channel = _channel(registrar)
    for _ in range(2):
        said = nudge(channel, {OLD, NEW}, _view(OLD))
        assert not any(line.startswith("sent") for line in said)
        assert said and "holds the DS" in said[0] and "waiting for the registry" in said[0]
    assert nudge(_channel(registrar), {OLD, NEW}, _view(OLD, NEW)) == []


def test_operation_failure_stops_before_any_removal(registrar: Registrar) -> None:
    registrar.detail(_entry(OLD, "ds-old"))
    registrar.associate(NEW, "op-add")
    registrar.status("op-add", "FAILED", "The registry rejected the DS: algorithm 13 "
                     "unsupported")
    with pytest.raises(ProviderError, match=r"ADD_DNSSEC for KSK .*operation op-add FAILED "
                       r"\(The registry rejected the DS: algorithm 13 unsupported\)"):
        nudge(_channel(registrar), {NEW}, _view(OLD))


def test_operation_error_status_is_a_failure(registrar: Registrar) -> None:
    registrar.detail()
    registrar.associate(NEW, "op-add")
    registrar.status("op-add", "ERROR", "internal error at the registry")
    with pytest.raises(ProviderError, match="operation op-add ERROR"):
        nudge(_channel(registrar), {NEW}, _view())


def test_operation_still_running_is_followed_up(registrar: Registrar) -> None:
    """operation_wait 0: the association is left IN_PROGRESS (and no removal starts); the
    next nudge asks about that operation first, then goes on to remove OLD."""
    channel = _channel(registrar, wait=0.0)
    registrar.detail(_entry(OLD, "ds-old"))
    registrar.associate(NEW, "op-add")
    registrar.status("op-add", "IN_PROGRESS")
    said = nudge(channel, {NEW}, _view(OLD))
    assert len(said) == 1 and said[0].endswith("operation op-add IN_PROGRESS")
    registrar.status("op-add", "IN_PROGRESS")
    said = nudge(channel, {NEW}, _view(OLD))
    assert said == [f"registrar: ADD_DNSSEC for KSK {NEW.key_tag} (DS {NEW.ds(ZONE).text}) "
                    f"at Route 53 Domains for {DOMAIN}: operation op-add IN_PROGRESS"]
    registrar.status("op-add", "SUCCESSFUL")
    registrar.detail(_entry(OLD, "ds-old"), _entry(NEW, "ds-new"))
    registrar.disassociate("ds-old", "op-remove")
    registrar.status("op-remove", "SUCCESSFUL", kind="REMOVE_DNSSEC")
    said = nudge(channel, {NEW}, _view(OLD))
    assert said[0].endswith("operation op-add SUCCESSFUL") and not said[0].startswith("sent")
    assert said[1].startswith("sent REMOVE_DNSSEC") and len(said) == 2


def test_throttling_backs_off_then_succeeds(registrar: Registrar) -> None:
    registrar.error("get_domain_detail", "ThrottlingException", "Rate exceeded")
    registrar.error("get_domain_detail", "TooManyRequestsException", "Too many requests",
                    429)
    registrar.detail(_entry(NEW, "ds-new"))
    said = nudge(_channel(registrar), {NEW}, _view())
    assert registrar.sleeps == [1.0, 2.0]
    assert len(said) == 1 and "holds the DS" in said[0]


def test_throttling_past_the_budget_waits_for_the_next_look(registrar: Registrar) -> None:
    for _ in range(6):
        registrar.error("get_domain_detail", "ThrottlingException", "Rate exceeded")
    said = nudge(_channel(registrar), {NEW}, _view())
    assert registrar.sleeps == [1.0, 2.0, 4.0, 8.0, 16.0]
    assert len(said) == 1 and said[0].startswith("registrar: ")
    assert "kept answering ThrottlingException (Rate exceeded) through 6 attempts" in said[0]


def test_permission_error_names_the_iam_action(registrar: Registrar) -> None:
    registrar.detail()
    registrar.error("associate_delegation_signer_to_domain", "AccessDeniedException",
                    "User: arn:aws:iam::1:user/ms is not authorized", 403)
    with pytest.raises(ProviderAuthError) as caught:
        nudge(_channel(registrar), {NEW}, _view())
    text = str(caught.value)
    assert "route53domains:AssociateDelegationSignerToDomain" in text
    assert "grant route53domains:AssociateDelegationSignerToDomain in its IAM policy" in text


def test_operation_in_progress_elsewhere_is_waited_for(registrar: Registrar) -> None:
    registrar.detail()
    registrar.error("associate_delegation_signer_to_domain", "DuplicateRequest",
                    "The request is already in progress for the domain.")
    said = nudge(_channel(registrar), {NEW}, _view())
    assert len(said) == 1 and "still in progress at the registrar" in said[0]


def test_no_ds_wanted_is_refused(registrar: Registrar) -> None:
    with pytest.raises(Refused, match="does not remove a domain's last DS"):
        nudge(_channel(registrar), set(), _view(OLD))


def test_unidentifiable_entries_are_left_alone(registrar: Registrar) -> None:
    registrar.detail(_entry(NEW, "ds-new"), {"Id": "ds-odd", "KeyTag": 1})
    said = nudge(_channel(registrar), {NEW}, _view())
    assert "(id ds-odd) names no key it knows, left alone" in said[0]
    assert not any(line.startswith("sent") for line in said)


def test_older_responses_with_public_keys_match_by_key(registrar: Registrar) -> None:
    """A DnssecKeys entry carrying Flags/PublicKey (before their deprecation) but no
    digest is matched by the DNSKEY itself."""
    attrs = _attributes(OLD)
    registrar.detail({"Id": "ds-old", **attrs})
    said = nudge(_channel(registrar), {OLD}, _view())
    assert len(said) == 1 and "holds the DS" in said[0]


def test_check_names_a_domain_not_in_the_account(registrar: Registrar) -> None:
    registrar.error("get_domain_detail", "InvalidInput",
                    "Domain example.com not found in account")
    item = asyncio.run(route53domains_check(_zone(), registrar.api))
    assert item["ok"] is False
    assert "domain example.com is not registered with Route 53 Domains in this AWS " \
           "account (Domain example.com not found in account)" in item["problems"][0]


def test_check_lists_the_registrars_ds(registrar: Registrar) -> None:
    registrar.detail(_entry(OLD, "ds-old"))
    item = asyncio.run(route53domains_check(_zone(), registrar.api))
    assert item["ok"] is True
    assert item["notes"] == [f"the registrar holds DS: DS {OLD.ds(ZONE).text} (id ds-old)"]


def test_status_unreadable_after_submission_is_followed_up(registrar: Registrar) -> None:
    """The association is accepted but GetOperationDetail stays throttled past the budget:
    the request is in the history as sent (UNCONFIRMED), nothing is removed, and the next
    nudge asks about that operation before anything else."""
    channel = _channel(registrar)
    registrar.detail(_entry(OLD, "ds-old"))
    registrar.associate(NEW, "op-add")
    for _ in range(6):
        registrar.error("get_operation_detail", "ThrottlingException", "Rate exceeded")
    said = nudge(channel, {NEW}, _view(OLD))
    assert len(said) == 1 and said[0].startswith("sent ADD_DNSSEC")
    assert "operation op-add UNCONFIRMED (its status could not be read" in said[0]
    registrar.status("op-add", "SUCCESSFUL")
    registrar.detail(_entry(OLD, "ds-old"), _entry(NEW, "ds-new"))
    registrar.disassociate("ds-old", "op-remove")
    registrar.status("op-remove", "SUCCESSFUL", kind="REMOVE_DNSSEC")
    said = nudge(channel, {NEW}, _view(OLD))
    assert said[0].endswith("operation op-add SUCCESSFUL")
    assert said[1].startswith("sent REMOVE_DNSSEC")


def test_operation_the_registrar_forgot_defers_to_its_ds_records(
        registrar: Registrar) -> None:
    """GetOperationDetail answers InvalidInput for a remembered operation (documented for
    one that has completed): the registrar's DS records decide what happens next."""
    channel = _channel(registrar, wait=0.0)
    registrar.detail()
    registrar.associate(NEW, "op-add")
    registrar.status("op-add", "SUBMITTED")
    assert nudge(channel, {NEW}, _view())[0].endswith("operation op-add SUBMITTED")
    registrar.error("get_operation_detail", "InvalidInput", "Operation op-add is completed")
    registrar.detail(_entry(NEW, "ds-new"))
    said = nudge(channel, {NEW}, _view())
    assert said[0].startswith("registrar: ADD_DNSSEC") and "op-add UNKNOWN" in said[0]
    assert "holds the DS" in said[1] and len(said) == 2


def test_name_servers_keep_the_glue_the_registrar_holds(registrar: Registrar) -> None:
    registrar.stub.add_response("get_domain_detail", {"DomainName": DOMAIN, "Nameservers": [
        {"Name": "ns1.example.com", "GlueIps": ["192.0.2.1"]}, {"Name": "ns1.p0.example.net"}]},
        {"DomainName": DOMAIN})
    registrar.stub.add_response("update_domain_nameservers", {"OperationId": "op-ns"}, {
        "DomainName": DOMAIN, "Nameservers": [
            {"Name": "ns1.example.com", "GlueIps": ["192.0.2.1"]},
            {"Name": "ns1.p1.example.net"}]})
    registrar.status("op-ns", "SUCCESSFUL", kind="UPDATE_NAMESERVER")
    view = ZoneView(dns.name.from_text(ZONE), (), (ParentView(
        "127.0.0.1:5300", datetime.now(UTC), ns=frozenset({"ns1.p0.example.net."})),))
    said = asyncio.run(_channel(registrar).nudge(
        None, frozenset({"ns1.example.com.", "ns1.p1.example.net."}), view))
    assert said == ["sent UPDATE_NAMESERVER to ns1.example.com., ns1.p1.example.net. at "
                    "Route 53 Domains for example.com: operation op-ns SUCCESSFUL"]
