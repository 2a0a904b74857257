"""Route 53 for the tests: moto (``mock_aws``, which implements Route 53 from AWS's
documented API) for hosted zones, record sets and changes, plus the documented
``GetDNSSEC`` answer of a signing zone, which moto lacks (it always answers
``NOT_SIGNING`` without keys). The response shape follows the Route 53 API reference
("GetDNSSEC", "KeySigningKey"); nothing here was observed on the live service."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import boto3
from fakeapi import ZONE, serve_view
from moto import mock_aws
from unit.signing import SigningKey, make_key

from core.observation import ServerView


class SigningRoute53:
    """A moto Route 53 client whose ``get_dnssec`` answers like a signing zone's."""

    def __init__(self, client: Any, ksk: SigningKey, *, signing: bool = True) -> None:
        self._client = client
        self.ksk = ksk
        self.signing = signing
        self.pending_reads = 0  # GetChange answers PENDING this many times first

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    def get_dnssec(self, HostedZoneId: str) -> dict[str, Any]:  # noqa: N803 (boto3's name)
        self._client.get_dnssec(HostedZoneId=HostedZoneId)  # NoSuchHostedZone as moto has it
        if not self.signing:
            return {"Status": {"ServeSignature": "NOT_SIGNING"}, "KeySigningKeys": []}
        rd = self.ksk.dnskey
        public = base64.b64encode(rd.key).decode()
        return {"Status": {"ServeSignature": "SIGNING"}, "KeySigningKeys": [{
            "Name": "multisigner_ksk", "Flag": 257, "KeyTag": self.ksk.tag,
            "KmsArn": "arn:aws:kms:us-east-1:111122223333:key/0b1d3f3e-0000-4000-8000-000000000001",
            "SigningAlgorithmMnemonic": "ECDSAP256SHA256", "SigningAlgorithmType": 13,
            "DigestAlgorithmMnemonic": "SHA-256", "DigestAlgorithmType": 2,
            "PublicKey": public, "DNSKEYRecord": f"257 3 13 {public}",
            "DSRecord": self.ksk.ds().text, "Status": "ACTIVE"}]}

    def change_resource_record_sets(self, **params: Any) -> dict[str, Any]:
        answer: dict[str, Any] = self._client.change_resource_record_sets(**params)
        if self.pending_reads:
            answer["ChangeInfo"]["Status"] = "PENDING"
        return answer

    def get_change(self, Id: str) -> dict[str, Any]:  # noqa: N803 (boto3's name)
        if self.pending_reads:
            self.pending_reads -= 1
            return {"ChangeInfo": {"Id": Id, "Status": "PENDING"}}
        return {"ChangeInfo": {"Id": Id, "Status": "INSYNC"}}


@contextmanager
def route53() -> Iterator[tuple[SigningRoute53, SigningKey, SigningKey]]:
    """A moto account with the public hosted zone ``ZONE``; (client, KSK, ZSK)."""
    with mock_aws():
        client = boto3.client("route53", region_name="us-east-1")
        client.create_hosted_zone(Name=ZONE, CallerReference="multisigner-tests")
        ksk, zsk = make_key(ksk=True), make_key(ksk=False)
        yield SigningRoute53(client, ksk), ksk, zsk


def served(ksk: SigningKey, zsk: SigningKey) -> Any:
    async def serve(zone: str) -> ServerView:
        return serve_view("r0", [ksk], [zsk], {ksk.key, zsk.key})

    return serve
