"""The step vocabulary: every observation and precondition a runbook may name, each one
pure check over what was observed. A check returns what does not hold yet (empty: it holds).

Runbooks are validated against this registry when they load (``runbooks`` lists the names
with their descriptions for the docs; a name without a check here, or a check without a
name there, fails at import), so a typo in a runbook never reaches the engine."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import dns.rdatatype

from core.keys import Digest, parent_follows, signers, tag_labels
from core.observation import ServerView, SignedRRset, ZoneView
from orchestrator.decide.evidence import ceil_seconds
from orchestrator.decide.goals import Goal
from orchestrator.decide.membership import Member
from orchestrator.decide.process_data import Payload
from orchestrator.decide.rollover import OWNER, Rolled
from orchestrator.decide.sig0_roll import Sig0Observed, Sig0Roll, key_lagging, parent_trust_missing
from runbooks import OBSERVATIONS as OBSERVATION_DOCS
from runbooks import PRECONDITIONS as PRECONDITION_DOCS
from runbooks import Step


@dataclass(frozen=True)
class CheckContext:
    step: Step
    view: ZoneView
    goal: Goal | None  # None while only preconditions are checked
    payload: Payload
    members: tuple[str, ...] = ()
    ns: frozenset[str] | None = None  # the NS RRset the step wants served
    content: tuple[str, ...] = ()  # zone-content differences, when the step compares content
    sig0: Sig0Observed | None = None  # what a SIG(0) key roll step saw


Check = Callable[[CheckContext], list[str]]


def _lag(what: str, labels: list[str] | tuple[str, ...]) -> list[str]:
    return [f"{what} at {', '.join(labels)}"] if labels else []


# -- observations -------------------------------------------------------------------------

def _goal(ctx: CheckContext) -> Goal:
    if ctx.goal is None:
        raise ValueError(f"step {ctx.step.id}: observations need the step's target")
    return ctx.goal


def served(ctx: CheckContext) -> list[str]:
    ctx = replace(ctx, goal=_goal(ctx))
    assert ctx.goal is not None
    return _lag(ctx.goal.what, ctx.goal.lagging(ctx.view))


def _rolled_servers(ctx: CheckContext, rolled: Rolled) -> tuple[ServerView, ...]:
    """Where the rolled keys are served: the owner's keys at every provider that receives
    the owner-signed set, a provider's at that provider's nameservers."""
    if rolled.signer == OWNER:
        return ctx.view.servers
    return ctx.view.of(rolled.signer)


def _signed_by_expected(ctx: CheckContext, rrset_of: Callable[[ServerView], object],
                        what: str, only: str = "") -> list[str]:
    rolled = ctx.payload
    if not isinstance(rolled, Rolled):
        return []
    expected = frozenset(k for w, t in ctx.step.keys.items()
                         if t == "active" and (k := rolled.key(w)) is not None)
    if rolled.signer == OWNER:
        # keys the step does not mention keep signing (they were made active earlier)
        expected = frozenset(k for w in ("old", "new")
                             if (k := rolled.key(w)) is not None
                             and ctx.step.keys.get(w, "active") == "active")
    mine = frozenset(k for k in (rolled.old, rolled.new) if k is not None)
    lag = []
    for server in _rolled_servers(ctx, rolled):
        signed = rrset_of(server)
        # Which of the two keys sign, by signature: old and new may share a key tag.
        if not isinstance(signed, SignedRRset) or signers(mine, signed.rrset,
                                                          signed.rrsigs) != expected:
            lag.append(server.label)
    return _lag(f"{what} {', '.join(tag_labels(expected)) or 'none'}{only}", lag)


def data_signers(ctx: CheckContext) -> list[str]:
    rolled = ctx.payload
    if isinstance(rolled, Rolled) and rolled.signer == OWNER:
        return []  # the owner's KSK signs key sets only
    return _signed_by_expected(ctx, lambda s: s.soa, "signatures by", " only")


def dnskey_signers(ctx: CheckContext) -> list[str]:
    return _signed_by_expected(ctx, lambda s: s.dnskey, "DNSKEY RRset signed by")


def parent_ds(ctx: CheckContext) -> list[str]:
    goal = _goal(ctx)
    want = goal.ds_keys
    lag = [p.server for p in ctx.view.parent if p.error is not None
           or not parent_follows(p.ds_set, want, goal.zone)]
    out = _lag(f"parent DS = {', '.join(tag_labels(want)) or 'none'}", lag)
    # Not in a signer change: a joining signer's servers are outside the chain until the
    # DS names its KSK, which is what the step waits for (the parent checks only the
    # servers it delegates to, and the joining one is not among them yet).
    stuck = _outside_the_chain(ctx, goal.zone) if lag and not isinstance(
        ctx.payload, Member) else []
    if stuck:
        # Otherwise the step just waits until parent_timeout with no hint why.
        out.append(f"parent: the DNSKEY RRset at {', '.join(stuck)} is signed by no key the "
                   "parent's DS names, so those servers do not validate and a parent that "
                   "checks the CDS against its DS (RFC 7344 sec. 4.1; the parent agent does) "
                   "will not follow it: have the DS registered by hand, or use a dsync "
                   "parent")
    return out


def _outside_the_chain(ctx: CheckContext, zone: str) -> list[str]:
    """The signers some nameserver of which serves a DNSKEY RRset signed by no key the
    parent's current (non-empty) DS RRset names. An unsigned delegation is not this
    case: there is no chain to be outside of yet."""
    ds = frozenset(d for p in ctx.view.parent if p.error is None for d in p.ds_set)
    if not ds:
        return []
    out: set[str] = set()
    for server in ctx.view.servers:
        if not server.ok or server.dnskey is None:
            continue
        named = [k for k in server.keys if any(d.matches(k, zone) for d in ds)]
        if not signers(named, server.dnskey.rrset, server.dnskey.rrsigs):
            out.add(server.provider)
    return sorted(out)


def ns_served(ctx: CheckContext) -> list[str]:
    if ctx.ns is None:
        return []
    return _lag("NS RRset", [s.label for s in ctx.view.servers
                             if not s.ok or s.ns_names != ctx.ns])


def parent_ns(ctx: CheckContext) -> list[str]:
    if ctx.ns is None:
        return []
    return _lag(f"parent NS = {', '.join(sorted(ctx.ns))}",
                [p.server for p in ctx.view.parent if p.error is not None or p.ns != ctx.ns])


def csync_served(ctx: CheckContext) -> list[str]:
    return _lag("CSYNC", [s.label for s in ctx.view.servers if s.csync is None])


def csync_gone(ctx: CheckContext) -> list[str]:
    return _lag("CSYNC removed", [s.label for s in ctx.view.servers if s.csync is not None])


def key_served(ctx: CheckContext) -> list[str]:
    if ctx.sig0 is None:
        raise ValueError(f"step {ctx.step.id}: key-served needs the KEY RRsets served")
    return _lag("SIG(0) KEY RRset", key_lagging(ctx.sig0))


def parent_key(ctx: CheckContext) -> list[str]:
    if ctx.sig0 is None or not isinstance(ctx.payload, Sig0Roll):
        raise ValueError(f"step {ctx.step.id}: parent-key needs a SIG(0) roll's KeyState")
    return parent_trust_missing(ctx.payload, ctx.sig0)


# -- preconditions ------------------------------------------------------------------------

def old_unused(ctx: CheckContext) -> list[str]:
    rolled = ctx.payload
    if not isinstance(rolled, Rolled):
        return []
    users = [s.label for s in ctx.view.servers  # by signature: the successor may share its tag
             if s.soa is not None and signers({rolled.old}, s.soa.rrset, s.soa.rrsigs)]
    return [f"the predecessor {rolled.old.key_tag} still signs data at " + ", ".join(users)
            ] if users else []


def _ds_covers(which: str) -> Check:
    def check(ctx: CheckContext) -> list[str]:
        rolled = ctx.payload
        if not isinstance(rolled, Rolled):
            return []
        key = rolled.key(which)  # type: ignore[arg-type]
        zone = ctx.view.zone.to_text()
        sets = [(p.ds_set, f"parent {p.server}") for p in ctx.view.parent if p.error is None]
        sets += [(frozenset(Digest.from_rdata(rd) for rd in c.rrset),
                  f"cached from {c.server} until {ceil_seconds(c.expires)}")
                 for c in ctx.view.cached_ds]
        return [f"DS RRset {origin} does not name key {key.key_tag if key else '?'}"
                for ds_set, origin in sets
                if key is None or not any(d.matches(key, zone) for d in ds_set)]
    return check


def remaining_ds(ctx: CheckContext) -> list[str]:
    member = ctx.payload
    if not isinstance(member, Member):
        return []
    zone = ctx.view.zone.to_text()
    staying = frozenset().union(*(ctx.view.api[m].signing_ksks for m in ctx.members
                                  if m != member.provider and m in ctx.view.api))
    return [f"the parent's DS at {p.server} names no KSK of a signer that stays; run "
            f"'multisigner sync {zone}' first" for p in ctx.view.parent
            if p.error is None and not any(d.matches(k, zone) for d in p.ds_set
                                           for k in staying)]


def content_matches(ctx: CheckContext) -> list[str]:
    who = ctx.payload.provider if isinstance(ctx.payload, Member) else "every signer"
    return [f"{d}: bring {who}'s zone data in line" for d in ctx.content]


OBSERVATIONS: dict[str, Check] = {
    "served": served,
    "data-signers": data_signers,
    "dnskey-signers": dnskey_signers,
    "parent": parent_ds,
    "ns-served": ns_served,
    "parent-ns": parent_ns,
    "csync-served": csync_served,
    "csync-gone": csync_gone,
    "key-served": key_served,
    "parent-key": parent_key,
}
PRECONDITIONS: dict[str, Check] = {
    "old-unused": old_unused,
    "ds-covers-new": _ds_covers("new"),
    "ds-covers-old": _ds_covers("old"),
    "remaining-ds": remaining_ds,
    "content-matches": content_matches,
}
# Preconditions whose input the engine must fetch first (they compare zone content).
NEEDS_CONTENT = frozenset({"content-matches"})

if set(OBSERVATIONS) != set(OBSERVATION_DOCS) or set(PRECONDITIONS) != set(PRECONDITION_DOCS):
    raise ImportError("the step vocabulary and the runbook schema disagree: "
                      f"{sorted(set(OBSERVATIONS) ^ set(OBSERVATION_DOCS))} "
                      f"{sorted(set(PRECONDITIONS) ^ set(PRECONDITION_DOCS))}")


def unmet(ctx: CheckContext) -> list[str]:
    """What the step's observations still wait for."""
    return [m for name in ctx.step.observe for m in OBSERVATIONS[name](ctx)]


def precondition_problems(ctx: CheckContext) -> list[str]:
    return [m for name in ctx.step.precondition for m in PRECONDITIONS[name](ctx)]


_T = dns.rdatatype
# The record types each observation reads from a nameserver (parent ones read none).
_POLLED: dict[str, tuple[dns.rdatatype.RdataType, ...]] = {
    "served": (_T.DNSKEY, _T.CDS, _T.CDNSKEY), "dnskey-signers": (_T.DNSKEY,),
    "data-signers": (_T.SOA,), "ns-served": (), "csync-served": (), "csync-gone": (),
    "key-served": (), "parent-key": (),
}


def polled_types(observe: Sequence[str], csync: bool) -> tuple[dns.rdatatype.RdataType, ...]:
    """What a poll between full reads asks each nameserver: the types the step's
    observations look at, and NS (which providers resolvers can reach)."""
    wanted = {_T.NS, *(t for o in observe for t in _POLLED.get(o, ())),
              *((_T.CSYNC,) if csync else ())}
    return tuple(sorted(wanted))
