"""SIG(0)-signed UPDATEs to the agent in front of a real PowerDNS parent zone: accepted
changes land in the zone; every kind of bad input gets its rcode and changes nothing."""

from __future__ import annotations

import os
import socket
import struct
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import dns.name
import dns.rcode
import dns.rdata
import pytest
from agentkit import AgentThread, agent_config, notify, parent_provider, raw_tcp, raw_udp
from dns.rdtypes.ANY.KEY import KEY
from dns.update import UpdateMessage
from prereq import needs
from updatekit import Answer, ask, signed, update

from core import sig0
from core.delegation_update import key_bootstrap
from multisigner_lab import Lab
from multisigner_lab.dnsq import answer, query
from orchestrator.parent_agent.trust import canonical
from state.audit import HistoryInfo

pytestmark = [pytest.mark.lab, needs("pdns_server", what="Debian package pdns-server")]

UPD = "upd.test."
OTHER = "other.test."
NS0 = "ns1.p0.test."
DS1 = "11111 13 2 " + "ab" * 32
DS2 = "22222 13 2 " + "cd" * 32


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    with Lab.start(tmp_path_factory.mktemp("ulab"), providers=1, zones=[UPD, OTHER],
                   scanner=False, unbound=False) as running:
        yield running


@pytest.fixture(scope="module")
def key() -> sig0.Sig0Key:
    return sig0.Sig0Key.generate(UPD)


@pytest.fixture(scope="module")
def agent(lab: Lab, key: sig0.Sig0Key, tmp_path_factory: pytest.TempPathFactory
          ) -> Iterator[AgentThread]:
    base = Path(tmp_path_factory.mktemp("uagent"))
    keys = base / "keys"
    config = agent_config(lab, key_directory=str(keys))
    running = AgentThread(config, parent_provider(lab), base / "agent.db").start()
    running.agent.trust.set(UPD, canonical(key.key_rdata()), "trusted", "test")
    try:
        yield running
    finally:
        running.stop()


def parent(lab: Lab, name: str, rdtype: str) -> list[str]:
    p = lab.parent
    rrset = answer(query(p.address, p.dns_port, name, rdtype), name, rdtype)
    return sorted(rd.to_text() for rd in rrset) if rrset is not None else []


def in_zone(lab: Lab, name: str, rdtype: str) -> list[str]:
    """What the parent zone holds (through its API: glue below a cut is not answered)."""
    with lab.parent_pdns_api() as api:
        data = api.get("/zones/test.").json()
    return sorted(r["content"] for rr in data["rrsets"] if rr["name"] == name
                  and rr["type"] == rdtype for r in rr["records"])


def ds_update(ds: list[str], zone: str = "test.", child: str = UPD) -> UpdateMessage:
    msg = update(zone)
    msg.replace(child, 2, "DS", *ds)
    return msg


def last(agent: AgentThread, kind: str = "update") -> HistoryInfo:
    return agent.history(kind)[-1]


def test_signed_ds_update_is_applied_and_answered_signed(
        lab: Lab, agent: AgentThread, key: sig0.Sig0Key) -> None:
    request = signed(ds_update([DS1, DS2]), key)
    got = ask(agent.port, request)
    assert got.rcode == dns.rcode.NOERROR, got
    assert parent(lab, UPD, "DS") == sorted([DS1, DS2])
    # the answer is signed by the agent's KEY, published at the DSYNC target
    published = parent(lab, "updater.test.", "KEY")
    assert len(published) == 1
    agent_key = dns.rdata.from_text("IN", "KEY", published[0])
    assert isinstance(agent_key, KEY)
    sig0.verify(got.parsed, [agent_key], now=int(time.time()), request=request)
    with pytest.raises(sig0.Sig0Error, match="BADSIG"):  # it covers that request only
        sig0.verify(got.parsed, [agent_key], now=int(time.time()), request=request[:-1])
    entry = last(agent)
    assert entry.to_state == "accepted" and entry.evidence["child"] == UPD
    assert entry.evidence["key"] == f"ECDSAP256SHA256/{key.key_tag}"
    assert any("DS" in c for c in entry.evidence["change"])
    # idempotent: the same change again (a fresh signature) is fine and changes nothing
    again = ask(agent.port, signed(ds_update([DS1, DS2]), key))
    assert again.rcode == dns.rcode.NOERROR and last(agent).to_state == "ignored"


def test_ns_and_in_bailiwick_glue(lab: Lab, agent: AgentThread, key: sig0.Sig0Key) -> None:
    inside = f"ns1.{UPD}"
    msg = update()
    msg.replace(UPD, 2, "NS", NS0, inside)
    bare = ask(agent.port, signed(msg, key))
    assert bare.rcode == dns.rcode.REFUSED and "without an address" in bare.text
    msg.replace(inside, 2, "A", "192.0.2.53")
    got = ask(agent.port, signed(msg, key), tcp=False)
    assert got.rcode == dns.rcode.NOERROR, got
    assert in_zone(lab, inside, "A") == ["192.0.2.53"]
    back = update()
    back.replace(UPD, 2, "NS", NS0)
    back.delete(inside, "A")
    assert ask(agent.port, signed(back, key)).rcode == dns.rcode.NOERROR
    assert in_zone(lab, inside, "A") == []


def assert_refused(agent: AgentThread, got: Answer, rcode: int, text: str) -> None:
    assert got.rcode == rcode and text in got.text, got
    assert last(agent).to_state == "refused"


def test_bad_updates_change_nothing(lab: Lab, agent: AgentThread, key: sig0.Sig0Key) -> None:
    before = {(n, t): parent(lab, n, t) for n, t in ((UPD, "DS"), (OTHER, "DS"),
                                                     ("test.", "NS"))}
    good = ds_update([DS1])
    # unsigned
    assert_refused(agent, ask(agent.port, good.to_wire()), dns.rcode.REFUSED,
                   "unsigned UPDATE")
    # a signature byte flipped
    wire = bytearray(signed(good, key))
    wire[-5] ^= 0x01
    assert_refused(agent, ask(agent.port, bytes(wire)), dns.rcode.NOTAUTH, "BADSIG")
    # a key the agent does not trust
    stranger = sig0.Sig0Key.generate(UPD)
    assert_refused(agent, ask(agent.port, signed(good, stranger)), dns.rcode.NOTAUTH, "BADKEY")
    # outside the time window, and replayed within it
    old = signed(good, key, now=int(time.time()) - 3600)
    assert_refused(agent, ask(agent.port, old), dns.rcode.NOTAUTH, "BADTIME")
    once = signed(ds_update([DS2]), key)
    assert ask(agent.port, once).rcode == dns.rcode.NOERROR
    assert_refused(agent, ask(agent.port, once, tcp=False), dns.rcode.REFUSED, "replayed")
    assert parent(lab, UPD, "DS") == [DS2]  # the first one was applied, once
    before[(UPD, "DS")] = [DS2]
    # this child's key, another child's delegation / the parent's own records / foreign glue
    for msg, why in ((ds_update([DS1], child=OTHER), "outside the delegation"),
                     (_ns("test."), "outside the delegation"),
                     (_a(NS0), "outside the delegation"),
                     (_txt(UPD), "only DS, KEY, NS at its apex")):
        assert_refused(agent, ask(agent.port, signed(msg, key)), dns.rcode.REFUSED, why)
    # this child's private key presented as another child's (signer other.test.)
    borrowed = sig0.Sig0Key(dns.name.from_text(OTHER), key.algorithm, key.private)
    assert_refused(agent, ask(agent.port, signed(ds_update([DS1], child=OTHER), borrowed)),
                   dns.rcode.NOTAUTH, "BADKEY")
    # an UPDATE for another zone; a signer that is no child
    assert_refused(agent, ask(agent.port, signed(ds_update([DS1], zone="example."), key)),
                   dns.rcode.NOTAUTH, "updates test. only")
    nochild = sig0.Sig0Key.generate("nochild.test.")
    assert_refused(agent, ask(agent.port, signed(ds_update([DS1], child="nochild.test."),
                                                 nochild)), dns.rcode.NOTAUTH, "not delegated")
    assert {n: parent(lab, *n) for n in before} == before


def _ns(name: str) -> UpdateMessage:
    msg = update()
    msg.add(name, 2, "NS", NS0)
    return msg


def _a(name: str) -> UpdateMessage:
    msg = update()
    msg.add(name, 2, "A", "192.0.2.66")
    return msg


def _txt(name: str) -> UpdateMessage:
    msg = update()
    msg.add(name, 2, "TXT", '"hello"')
    return msg


def test_malformed_oversized_truncated(agent: AgentThread, key: sig0.Sig0Key) -> None:
    wire = signed(ds_update([DS1]), key)
    assert raw_udp(agent.port, b"\x01\x02\x03", timeout=0.5) is None  # no header: dropped
    junk = ask(agent.port, wire + b"\x00\x01")  # trailing junk after the SIG(0)
    assert junk.rcode == dns.rcode.FORMERR
    chopped = ask(agent.port, wire[:40])
    assert chopped.rcode == dns.rcode.FORMERR
    big = wire[:12] + os.urandom(20000)
    over_udp = ask(agent.port, big, tcp=False)
    assert over_udp.rcode == dns.rcode.FORMERR and "over the" in over_udp.text
    over_tcp = raw_tcp(agent.port, struct.pack("!H", 30000) + big[:100])
    assert over_tcp is not None and over_tcp[:2] == wire[:2]
    # a TCP message cut short: the connection is closed without an answer
    assert raw_tcp(agent.port, struct.pack("!H", 200) + wire[:50], timeout=12) is None
    assert notify(agent.port, UPD, "CDS").rcode() == dns.rcode.NOERROR  # still serving


def test_several_messages_on_one_tcp_connection(agent: AgentThread, key: sig0.Sig0Key) -> None:
    first, second = signed(ds_update([DS1]), key), signed(ds_update([DS2]), key)
    with socket.create_connection(("127.0.0.1", agent.port), timeout=5) as s:
        s.sendall(b"".join(struct.pack("!H", len(w)) + w for w in (first, second)))
        answers = []
        for _ in range(2):
            size = struct.unpack("!H", _recv(s, 2))[0]
            answers.append(Answer(_recv(s, size)))
    assert [a.message.id for a in answers] == [sig0.parse(first).message.id,
                                               sig0.parse(second).message.id]
    assert all(a.rcode == dns.rcode.NOERROR for a in answers), answers


def _recv(s: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = s.recv(size - len(data))
        assert chunk, "connection closed early"
        data += chunk
    return data


def test_flood_is_rate_limited(lab: Lab, key: sig0.Sig0Key, tmp_path: Path) -> None:
    config = agent_config(lab, rate_limit=5)
    flood = AgentThread(config, parent_provider(lab), tmp_path / "flood.db").start()
    try:
        flood.agent.trust.set(UPD, canonical(key.key_rdata()), "trusted", "test")
        answers = [ask(flood.port, signed(ds_update([DS1]), key), tcp=False)
                   for _ in range(15)]
        limited = [a for a in answers if "rate limit" in a.text]
        assert limited and all(a.rcode == dns.rcode.REFUSED for a in limited)
        assert len(limited) >= 5
    finally:
        flood.stop()


@needs("nsupdate", "dnssec-keygen", what="Debian packages bind9-dnsutils and bind9-utils")
def test_nsupdate_is_accepted(lab: Lab, agent: AgentThread, tmp_path: Path) -> None:
    out = subprocess.run(["dnssec-keygen", "-q", "-K", str(tmp_path), "-T", "KEY", "-a",
                          "ECDSAP256SHA256", "-n", "HOST", UPD],
                         capture_output=True, text=True, check=True)
    base = tmp_path / out.stdout.strip()
    line = next(x for x in Path(f"{base}.key").read_text().splitlines()
                if x and not x.startswith(";"))
    bind_key = dns.rdata.from_text("IN", "KEY", line.split("KEY", 1)[1].strip())
    assert isinstance(bind_key, KEY)
    agent.agent.trust.set(UPD, canonical(bind_key), "trusted", "test")
    script = (f"server 127.0.0.1 {agent.port}\nzone test.\nupdate delete {UPD} DS\n"
              f"update add {UPD} 2 DS {DS2}\nsend\n")
    done = subprocess.run(["nsupdate", "-v", "-k", f"{base}.private"], input=script,
                          capture_output=True, text=True, timeout=30, check=False)
    assert done.returncode == 0, done.stderr
    assert parent(lab, UPD, "DS") == [DS2]
    assert last(agent).to_state == "accepted"


def test_key_roll_signed_by_the_trusted_key_moves_trust(
        lab: Lab, agent: AgentThread, key: sig0.Sig0Key) -> None:
    """The child's SIG(0) key roll: the UPDATE replacing its KEY RRset with the successor,
    signed by the trusted predecessor, is applied at once (no bootstrap); afterwards only
    the successor is trusted, and an UPDATE signed by the predecessor is refused."""
    successor = sig0.Sig0Key.generate(UPD)
    roll = key_bootstrap(dns.name.from_text("test."), dns.name.from_text(UPD),
                         successor.key_rdata())
    trust = agent.agent.trust
    try:
        # signed by neither key the UPDATE names nor a trusted one: refused, nothing moves
        stranger = sig0.Sig0Key.generate(UPD)
        assert_refused(agent, ask(agent.port, signed(roll, stranger)), dns.rcode.NOTAUTH,
                       "BADKEY")
        assert canonical(successor.key_rdata()) not in map(canonical, trust.trusted(UPD))
        got = ask(agent.port, signed(roll, key), tcp=False)
        assert got.rcode == dns.rcode.NOERROR and "bootstrap" not in got.text, got
        entry = last(agent)
        assert entry.to_state == "accepted", entry
        assert entry.evidence["key"] == f"ECDSAP256SHA256/{key.key_tag}"
        # the KEY RRset was replaced: every other key (an earlier test's too) is dropped
        assert [canonical(k) for k in trust.trusted(UPD)] == [canonical(
            successor.key_rdata())]
        record = trust.get(UPD, canonical(successor.key_rdata()))
        assert record is not None and record.method == "signed-update"
        old = ask(agent.port, signed(ds_update([DS1]), key))
        assert old.rcode == dns.rcode.NOTAUTH and "BADKEY" in old.text, old
        new = ask(agent.port, signed(ds_update([DS1]), successor))
        assert new.rcode == dns.rcode.NOERROR, new
        assert parent(lab, UPD, "DS") == [DS1]
    finally:  # the module's agent trusts ``key`` for the other tests
        for other in trust.trusted(UPD):
            trust.remove(UPD, canonical(other))
        trust.set(UPD, canonical(key.key_rdata()), "trusted", "test")
