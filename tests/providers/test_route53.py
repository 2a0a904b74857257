"""The Route 53 adapter against moto plus the documented GetDNSSEC answer
(``fake_route53.py``), and botocore's Stubber for AWS's documented error answers: own
keys (the KMS-backed KSK from the API, the AWS-managed ZSK by DNS), a zone that does not
sign, a change that stays PENDING for a while, a principal without the IAM permission,
and ``check`` refusing Route 53 as a Model 2 signer."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

import boto3
import pytest
from botocore.stub import Stubber
from fake_route53 import route53, served
from fakeapi import ZONE, FakeClock

from core.config import Route53ProviderConfig
from core.errors import ProviderAuthError, ProviderError
from orchestrator.cli import main
from providers.route53.adapter import Route53Provider

T = TypeVar("T")
CONFIG = Route53ProviderConfig(name="r0", nameservers=["192.0.2.53"])


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


def test_own_keys_are_the_kms_ksk_and_the_served_zsk() -> None:
    with route53() as (client, ksk, zsk):
        p = Route53Provider(CONFIG, client=client, serve=served(ksk, zsk))
        state = run(p.read_zone(ZONE))
        assert {(k.key, k.role, k.active) for k in state.own_keys} == {
            (ksk.key, "ksk", True), (zsk.key, "zsk", True)}
        assert [k.key_id for k in state.own_keys if k.role == "ksk"] == ["multisigner_ksk"]
        assert state.ns  # moto's delegation set


def test_a_zone_that_does_not_sign_is_a_clear_error() -> None:
    with route53() as (client, ksk, zsk):
        client.signing = False
        with pytest.raises(ProviderError, match=r"does not sign \(ServeSignature "
                                                r"'NOT_SIGNING'\).*EnableHostedZoneDNSSEC"):
            run(Route53Provider(CONFIG, client=client, serve=served(ksk, zsk)).read_zone(ZONE))


def test_a_change_is_waited_for_until_insync() -> None:
    with route53() as (client, ksk, zsk):
        client.pending_reads = 3
        clock = FakeClock()
        p = Route53Provider(CONFIG, client=client, serve=served(ksk, zsk), clock=clock,
                            sleep=clock.sleep)
        run(p.set_rrset(ZONE, f"_acme-challenge.{ZONE}", "TXT", ['"t1"'], 60))
        assert clock.slept == [2.0] * 4  # the write's own PENDING, then three reads
        client.pending_reads = 10_000
        with pytest.raises(ProviderError, match=r"still PENDING after 120s"):
            run(p.set_rrset(ZONE, f"_acme-challenge.{ZONE}", "TXT", [], 60))


def test_a_principal_without_the_permission_is_told_the_iam_action() -> None:
    client = boto3.client("route53", region_name="us-east-1", aws_access_key_id="x",
                          aws_secret_access_key="y")
    with Stubber(client) as stub:
        stub.add_client_error("get_hosted_zone_count", service_error_code="AccessDenied",
                              service_message="User: arn:aws:iam::111122223333:user/ms is "
                              "not authorized to perform: route53:GetHostedZoneCount",
                              http_status_code=403)
        with pytest.raises(ProviderAuthError) as err:
            run(Route53Provider(CONFIG, client=client).check_access())
    assert "grant route53:GetHostedZoneCount" in str(err.value)


def test_check_refuses_route53_as_a_model_2_signer(tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "ms.toml"
    path.write_text(f"""\
[state]
url = "sqlite:///{tmp_path / 'state.db'}"

[[providers]]
name = "r0"
type = "route53"
endpoint_url = "http://127.0.0.1:9"
max_attempts = 1
timeout = "1s"
nameservers = ["127.0.0.1:9"]

[[zones]]
name = "example.test"
model = 2
signers = ["r0"]
""")
    assert main(["--config", str(path), "check"]) == 1
    assert ("provider r0 (route53) cannot import foreign dnskey, publish cds; it cannot be a "
            "signer of a model 2 (cross-import) zone") in capsys.readouterr().out
