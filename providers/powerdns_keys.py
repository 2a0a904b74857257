"""Creating a PowerDNS key without ever making two.

``POST /zones/{zone}/cryptokeys`` is not idempotent: if the answer is lost (a read timeout,
a dropped connection, a proxy's 5xx) the key may exist anyway, and posting again would add
a second one -- an extra key the zone then publishes, or an extra KSK the parent is asked
to trust. So the controller lists the zone's keys before posting and, after an ambiguous
failure, lists them again: exactly one new key matching the request is the one it asked
for and is adopted; anything else fails with a message that says what to check.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from core.errors import ProviderError, ProviderUnreachable
from core.keys import Key, Role
from core.observation import ApiKey


@dataclass(frozen=True)
class KeyRequest:
    role: Role
    algorithm: str
    active: bool
    published: bool

    def body(self) -> dict[str, Any]:
        return {"keytype": self.role, "active": self.active, "published": self.published,
                "algorithm": self.algorithm}

    def matches(self, item: dict[str, Any]) -> bool:
        """Whether a cryptokey object (GET /cryptokeys) is what this request makes."""
        key = Key.parse(str(item["dnskey"]))
        return (key.sep == (self.role != "zsk")
                and str(item.get("algorithm", "")).upper() == self.algorithm.upper()
                and bool(item["active"]) == self.active
                and bool(item.get("published", True)) == self.published)


def reconcile(want: KeyRequest, before: set[str], after: Iterable[dict[str, Any]],
              detail: str, finished: bool, *, provider: str, zone: str) -> ApiKey | None:
    """After an ambiguous POST: the key it made, or None when it certainly made none
    (``finished``: PowerDNS itself answered, so a key it made would be listed) and asking
    again is safe. Raises when neither can be told."""
    new = [item for item in after if str(item["id"]) not in before]
    ours = [item for item in new if want.matches(item)]
    endpoint = f"POST /zones/{zone}/cryptokeys"
    if len(new) == 1 and len(ours) == 1:
        item = ours[0]
        return ApiKey(key=Key.parse(str(item["dnskey"])), role=want.role, active=want.active,
                      published=want.published, key_id=str(item["id"]))
    if new:
        ids = ", ".join(str(item["id"]) for item in new)
        raise ProviderError(
            f"creating a {want.role} failed ambiguously ({detail}) and meanwhile key(s) {ids} "
            "appeared; which one, if any, is the controller's is unclear, so none is adopted "
            "and nothing is retried. Check the zone's keys at the provider, delete the ones "
            "nobody made on purpose, then run the step again",
            provider=provider, zone=zone, endpoint=endpoint)
    if finished:
        return None
    raise ProviderUnreachable(
        f"creating a {want.role} failed ambiguously ({detail}) and no new key is listed yet; "
        "the request may still take effect, so it is not repeated (that could make two "
        "keys). The next attempt adopts the key if it appears",
        provider=provider, zone=zone, endpoint=endpoint)
