"""What a child may change in its parent by UPDATE (pure): its own DS, NS, KEY and
in-bailiwick glue; RFC 2136 update-section forms; the result must stay a delegation."""

from __future__ import annotations

import dns.rdataclass
import dns.update
import pytest

from core.parent_agent_config import ParentAgentConfig
from orchestrator.decide import parent_policy as policy
from orchestrator.parent_agent.ratelimit import RateLimiter

CHILDREN = ["a.test.", "b.test.", "sub.a.test."]
DS = "1 13 2 " + "ab" * 32


def changes(build: dns.update.UpdateMessage) -> list[policy.Change]:
    return policy.changes_of(build.update)


def test_rfc2136_forms() -> None:
    msg = dns.update.UpdateMessage("test.")
    msg.add("a.test.", 60, "DS", DS)
    msg.delete("a.test.", "NS")
    msg.delete("a.test.", "NS", "ns1.example.")
    msg.delete("ns1.a.test.")
    got = changes(msg)
    assert [c.op for c in got] == ["add", "delete-rrset", "delete-rr", "delete-name"]
    assert got[0].rdata == DS and got[0].ttl == 60
    assert got[2].rdata == "ns1.example."


def test_allowed_and_refused() -> None:
    def verdict(name: str, rdtype: str, rdata: str, child: str = "a.test.") -> str:
        msg = dns.update.UpdateMessage("test.")
        msg.add(name, 60, rdtype, rdata)
        return policy.check("test.", child, CHILDREN, changes(msg)).reason

    assert verdict("a.test.", "DS", DS) == "every change is inside the delegation"
    assert verdict("a.test.", "NS", "ns1.a.test.") == "every change is inside the delegation"
    assert verdict("ns1.a.test.", "A", "192.0.2.1") == "every change is inside the delegation"
    assert "outside the delegation" in verdict("b.test.", "DS", DS)       # another child
    assert "outside the delegation" in verdict("test.", "NS", "ns.x.")   # the parent's own
    assert "outside the delegation" in verdict("ns1.b.test.", "A", "192.0.2.1")  # foreign
    assert "another delegation" in verdict("sub.a.test.", "DS", DS)      # a grandchild
    assert "at its apex" in verdict("a.test.", "TXT", '"x"')
    assert "A/AAAA" in verdict("www.a.test.", "MX", "10 mx.a.test.")
    assert "not delegated" in verdict("c.test.", "DS", DS, child="c.test.")
    assert "not below" in verdict("a.example.", "DS", DS, child="a.example.")
    msg = dns.update.UpdateMessage("test.")
    msg.delete("a.test.")
    assert "name the type" in policy.check("test.", "a.test.", CHILDREN, changes(msg)).reason


def test_result_must_stay_a_delegation() -> None:
    current = {("a.test.", "NS"): frozenset({"ns1.a.test.", "ns.example."})}
    msg = dns.update.UpdateMessage("test.")
    msg.delete("a.test.", "NS")
    after = policy.apply(current, changes(msg))
    assert after[("a.test.", "NS")] == frozenset()
    assert "empty" in (policy.check_result("a.test.", after, {}) or "")
    assert "ns1.a.test." in (policy.check_result("a.test.", {}, {"ns1.a.test.": False}) or "")
    assert policy.check_result("a.test.", {}, {"ns1.a.test.": True}) is None


def test_bad_update_rrs() -> None:
    msg = dns.update.UpdateMessage("test.")
    msg.add("a.test.", 60, "DS", DS)
    msg.update[0].rdclass = dns.rdataclass.CH
    with pytest.raises(policy.BadUpdate, match="not the zone's"):
        changes(msg)


def test_rate_limiter_refills() -> None:
    now = [0.0]
    limit = RateLimiter(2, clock=lambda: now[0])
    assert [limit.allow("x") for _ in range(3)] == [True, True, False]
    assert limit.allow("y")  # per key
    now[0] += 0.5
    assert limit.allow("x") and not limit.allow("x")


def test_config_rules() -> None:
    base = {"zone": "test.", "provider": "p", "listen": ["127.0.0.1:5399"],
            "target": "updater.test."}
    config = ParentAgentConfig.model_validate(base)
    assert config.bootstrap == ["at-apex"] and config.scan_interval.total_seconds() == 3600
    for bad in ({"bootstrap": ["manual"]}, {"bootstrap": ["unsigned", "unsigned"]},
                {"listen": []}, {"bootstrap": ["unsigned"], "bootstrap_interval": "0s"},
                {"bootstrap_checks": 0}, {"surprise": 1}):
        with pytest.raises(ValueError):
            ParentAgentConfig.model_validate({**base, **bad})


def test_trust_store_survives_a_restart(tmp_path: object) -> None:
    from pathlib import Path

    from core.errors import ConfigError
    from core.sig0 import Sig0Key
    from orchestrator.parent_agent.trust import TrustStore, canonical

    directory = Path(str(tmp_path))
    done, cut = Sig0Key.generate("a.test."), Sig0Key.generate("a.test.")
    store = TrustStore(directory)
    store.set("a.test.", canonical(done.key_rdata()), "trusted", "at-apex")
    store.set("a.test.", canonical(cut.key_rdata()), "bootstrapping")
    assert (directory / "trusted-keys.json").stat().st_mode & 0o777 == 0o600
    again = TrustStore(directory)
    assert [canonical(k) for k in again.trusted("A.TEST.")] == [canonical(done.key_rdata())]
    assert again.find("a.test.", cut.key_tag) == []  # the interrupted bootstrap is forgotten
    (directory / "trusted-keys.json").write_text("{not json")
    with pytest.raises(ConfigError, match="cannot read the agent's trusted keys"):
        TrustStore(directory)
