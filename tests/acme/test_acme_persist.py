"""dns-persist-01 (``acme persist``): the ``_validation-persist`` record at every signer,
kept as a managed record that ``verify`` checks; a signer that lost it is reported."""

from __future__ import annotations

import pytest
from acmekit import HOST, everywhere, set_everywhere
from integration.itkit import NEEDS_SERVERS, Run, api_snapshot, history, sql, state_db

from multisigner_lab import Lab

pytestmark = [pytest.mark.lab, NEEDS_SERVERS]

URI = "https://ca.example/acme/acct/1234"
URI2 = "https://ca.example/acme/acct/5678"


def _codes(res_json: dict[str, object]) -> list[tuple[str, str | None]]:
    zones = res_json["zones"]
    assert isinstance(zones, list)
    return [(b["code"], b.get("provider")) for b in zones[0]["breaches"]]


def test_persist_verify_and_a_provider_that_lost_it(synced: Lab, ms: Run) -> None:
    lab, cfg = synced, synced.config_path
    name = f"_validation-persist.p.{HOST}"
    res = ms(cfg, "acme", "persist", f"*.p.{HOST}", "--issuer", "CA.Example",
             "--account-uri", URI, "--persist-until", "2099-01-01", "--wait", "--json")
    assert res.rc == 0, res
    value = "ca.example; accounturi=" + URI + "; policy=wildcard; persistUntil=4070908800"
    assert res.json()["values"] == [value] and res.json()["name"] == name
    assert all(v == {value} for v in everywhere(lab, HOST, name))
    # a second account's record coexists; the same account's record is replaced
    assert ms(cfg, "acme", "persist", f"p.{HOST}", "--issuer", "ca.example",
              "--account-uri", URI2).rc == 0
    assert ms(cfg, "acme", "persist", f"p.{HOST}", "--issuer", "ca.example",
              "--account-uri", URI).rc == 0
    want = {f"ca.example; accounturi={URI}", f"ca.example; accounturi={URI2}"}
    assert all(v == want for v in everywhere(lab, HOST, name))
    rows = sql(state_db(cfg), "SELECT name, key, value FROM managed_record ORDER BY key")
    assert rows == [(name, f"ca.example {URI}", f"ca.example; accounturi={URI}"),
                    (name, f"ca.example {URI2}", f"ca.example; accounturi={URI2}")]
    res = ms(cfg, "verify", HOST, "--json")
    assert res.rc == 0 and _codes(res.json()) == [], res
    # p1 loses the record behind the controller's back
    set_everywhere(lab, HOST, name, "TXT", [f'"ca.example; accounturi={URI2}"'],
                   providers=["p1"])
    res = ms(cfg, "verify", HOST, "--json")
    assert res.rc == 1, res
    assert _codes(res.json()) == [("MANAGED_RECORD_MISSING", "p1")], res.out
    # persisting again repairs it
    assert ms(cfg, "acme", "persist", f"p.{HOST}", "--issuer", "ca.example",
              "--account-uri", URI, "--wait").rc == 0
    assert ms(cfg, "verify", HOST).rc == 0
    # removing it: gone everywhere, no longer managed
    assert ms(cfg, "acme", "persist", f"p.{HOST}", "--issuer", "ca.example",
              "--account-uri", URI, "--remove").rc == 0
    assert all(v == {f"ca.example; accounturi={URI2}"} for v in everywhere(lab, HOST, name))
    assert len(sql(state_db(cfg), "SELECT * FROM managed_record")) == 1
    states = [r["to_state"] for r in history(ms, cfg, HOST) if r["kind"] == "acme"]
    assert states[-1] == "persist-removed" and states.count("persisted") == 4


@pytest.mark.parametrize(("args", "message"), [
    (["--issuer", "not a domain", "--account-uri", URI], "is not a domain name"),
    (["--issuer", "ca.example", "--account-uri", "http://ca.example/acct/1"], "https://"),
    (["--issuer", "ca.example", "--account-uri", "https://ca.example/a;b"], "https://"),
    (["--issuer", "ca.example", "--account-uri", URI, "--persist-until", "2001-01-01"],
     "not in the future"),
])
def test_persist_bad_input(lab: Lab, ms: Run, args: list[str], message: str) -> None:
    before = api_snapshot(lab, HOST)
    res = ms(lab.config_path, "acme", "persist", f"bad.{HOST}", *args)
    assert res.rc == 2 and message in res.err, res
    assert api_snapshot(lab, HOST) == before
