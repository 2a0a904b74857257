"""A Model 2 ``sync`` whose parent is a registrar (``[zones.parent] type =
"route53domains"``), in the lab: two real PowerDNS signers and the lab's real PowerDNS
parent ``test.``, the CLI run in-process.

The registrar is a fake Route 53 Domains client (the boto3 method names and the documented
request/response shapes; the shapes themselves are checked against botocore's service
model by tests/providers/test_route53domains.py) that *plays the registry*: once an
operation has finished SUCCESSFUL it copies the DS records it holds into the parent zone,
a few seconds later, through the parent's PowerDNS API. So the engine must send the
association and then wait until the parent's nameservers serve the DS; no CDS scanner
runs in this lab.
"""

from __future__ import annotations

import base64
import itertools
import threading
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import botocore.exceptions
import pytest
from itkit import Run, history, running_lab
from prereq import needs

from core.config import ParentConfig
from core.keys import Digest, Key
from multisigner_lab import Lab
from multisigner_lab.dnsq import answer, query
from multisigner_lab.powerdns import set_rrset

pytestmark = [pytest.mark.lab, needs("pdns_server", what="Debian package pdns-server")]

ZONE = "reg.test."
DOMAIN = "reg.test"
PUBLISH_DELAY = 3.0  # the registry publishes this long after the operation succeeded


class FakeRegistrar:
    """Route 53 Domains for one domain, and the registry behind it (see the module doc).
    Operations report IN_PROGRESS on their first GetOperationDetail, then SUCCESSFUL."""

    def __init__(self, lab: Lab, held: list[Key]) -> None:
        self.lab = lab
        self.ids = itertools.count(1)
        self.held: dict[str, Key] = {f"ds-{next(self.ids)}": k for k in held}
        self.polls: dict[str, int] = {}
        self.calls: list[str] = []
        self.published_at: float | None = None
        self.timers: list[threading.Timer] = []

    def _domain(self, name: str, operation: str) -> None:
        if name != DOMAIN:
            raise botocore.exceptions.ClientError(
                {"Error": {"Code": "InvalidInput",
                           "Message": f"Domain {name} not found in account"}}, operation)

    def get_domain_detail(self, DomainName: str) -> dict[str, Any]:  # noqa: N803
        self.calls.append("GetDomainDetail")
        self._domain(DomainName, "GetDomainDetail")
        keys = []
        for ds_id, key in self.held.items():
            tag, alg, dtype, digest = key.ds(ZONE).text.split(" ")
            keys.append({"Id": ds_id, "KeyTag": int(tag), "Algorithm": int(alg),
                         "DigestType": int(dtype), "Digest": digest})
        return {"DomainName": DomainName, "DnssecKeys": keys}

    def associate_delegation_signer_to_domain(
            self, DomainName: str, SigningAttributes: dict[str, Any]  # noqa: N803
    ) -> dict[str, Any]:
        self._domain(DomainName, "AssociateDelegationSignerToDomain")
        a = SigningAttributes
        key = Key.parse(f"{a['Flags']} 3 {a['Algorithm']} {a['PublicKey']}")
        base64.b64decode(a["PublicKey"], validate=True)
        self.calls.append(f"Associate {key.key_tag}")
        self.held[f"ds-{next(self.ids)}"] = key
        return {"OperationId": self._operation()}

    def disassociate_delegation_signer_from_domain(
            self, DomainName: str, Id: str  # noqa: N803
    ) -> dict[str, Any]:
        self._domain(DomainName, "DisassociateDelegationSignerFromDomain")
        self.calls.append(f"Disassociate {Id}")
        del self.held[Id]
        return {"OperationId": self._operation()}

    def _operation(self) -> str:
        op = f"op-{next(self.ids)}"
        self.polls[op] = 0
        return op

    def get_operation_detail(self, OperationId: str) -> dict[str, Any]:  # noqa: N803
        self.calls.append("GetOperationDetail")
        self.polls[OperationId] += 1
        if self.polls[OperationId] == 1:
            return {"OperationId": OperationId, "Status": "IN_PROGRESS"}
        if self.polls[OperationId] == 2:
            timer = threading.Timer(PUBLISH_DELAY, self._publish)
            self.timers.append(timer)
            timer.start()
        return {"OperationId": OperationId, "Status": "SUCCESSFUL"}

    def _publish(self) -> None:
        with self.lab.pdns_api("parent") as api:
            set_rrset(api, "test.", ZONE, "DS", ttl=2,
                      contents=sorted(k.ds(ZONE).text for k in self.held.values()))
        self.published_at = time.time()


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    with running_lab(tmp_path_factory, "registrar", providers=2, zones=[ZONE],
                     scanner=False, unbound=False) as running:
        yield running


def _config(lab: Lab, tmp_path: Path, domain: str | None = None) -> Path:
    text = lab.config_path.read_text()
    assert text.count('type = "cds-scan"') == 1
    parent = 'type = "route53domains"' + (f'\ndomain = "{domain}"' if domain else "")
    path = tmp_path / "registrar.toml"
    path.write_text(text.replace('type = "cds-scan"', parent))
    return path


def _ksk(lab: Lab, provider: str) -> Key:
    return next(Key.parse(k.dnskey) for k in lab.keys(provider, ZONE) if k.flags == 257)


def _parent_ds(lab: Lab) -> set[str]:
    """The DS the parent's nameserver serves for the zone (canonical Digest text)."""
    rrset = answer(query(lab.parent.address, lab.parent.dns_port, ZONE, "DS"), ZONE, "DS")
    if rrset is None:
        return set()
    return {Digest.from_rdata(r).text for r in rrset}


def _fake(lab: Lab, monkeypatch: pytest.MonkeyPatch, held: list[Key]) -> FakeRegistrar:
    fake = FakeRegistrar(lab, held)

    def make_client(parent: ParentConfig) -> FakeRegistrar:
        assert parent.type == "route53domains"
        return fake

    monkeypatch.setattr("orchestrator.engine.registrar_channel.make_client", make_client)
    monkeypatch.setattr("orchestrator.registrar_checks.make_client", make_client)
    return fake


def test_sync_associates_the_ds_then_observes_it(
        lab: Lab, ms: Run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    p0, p1 = _ksk(lab, "p0"), _ksk(lab, "p1")
    # The registrar holds what the lab's parent starts with: the DS of p0's KSK.
    assert _parent_ds(lab) == {p0.ds(ZONE).text}
    fake = _fake(lab, monkeypatch, [p0])
    config = _config(lab, tmp_path)
    checked = ms(config, "check")
    assert f"the registrar holds DS: DS {p0.ds(ZONE).text}" in checked.out, checked

    started = time.time()
    res = ms(config, "sync", ZONE)
    for timer in fake.timers:
        timer.join()
    assert res.rc == 0, res
    assert f"{ZONE}: synced" in res.out, res
    # one association (p1's KSK; p0's DS is still wanted), awaited, nothing removed
    assert [c for c in fake.calls if not c.startswith("Get")] == [f"Associate {p1.key_tag}"]
    assert fake.calls.index(f"Associate {p1.key_tag}") > fake.calls.index("GetDomainDetail")
    assert fake.calls.count("GetOperationDetail") >= 2
    assert _parent_ds(lab) == {p0.ds(ZONE).text, p1.ds(ZONE).text}

    entries = history(ms, config, ZONE)
    sent = [e for e in entries if e["reason"].startswith(
        f"parent: sent ADD_DNSSEC for KSK {p1.key_tag}")]
    assert len(sent) == 1, [e["reason"] for e in entries]
    assert sent[0]["reason"].endswith("SUCCESSFUL")
    # the step waiting for the parent moved on only after the registry published the DS
    left = next(e for e in entries if e["seq"] > sent[0]["seq"]
                and e["from_state"] == sent[0]["to_state"]
                and e["to_state"] != e["from_state"])
    assert fake.published_at is not None and started < fake.published_at
    observed_at = datetime.fromisoformat(left["evidence"]["observed_at"]).timestamp()
    assert observed_at >= fake.published_at, (left, fake.published_at)

    # idempotent: in sync now; the registrar is not asked to change anything
    calls = list(fake.calls)
    again = ms(config, "sync", ZONE)
    assert again.rc == 0 and "in sync" in again.out, again
    assert [c for c in fake.calls[len(calls):] if not c.startswith("Get")] == []


def test_check_names_a_domain_not_in_the_account(
        lab: Lab, ms: Run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _fake(lab, monkeypatch, [])
    config = _config(lab, tmp_path)
    text = config.read_text().replace(f'name = "{ZONE}"', 'name = "other.test."')
    config.write_text(text)
    res = ms(config, "check")
    assert res.rc == 1, res
    assert ("domain other.test is not registered with Route 53 Domains in this AWS account "
            "(Domain other.test not found in account)") in res.out + res.err, res
