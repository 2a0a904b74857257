"""Render every runbook to a Markdown page in ``docs/processes/``.

``python -m orchestrator.docs_render`` rewrites the pages; ``--check`` exits 1 if a page
is out of date (a unit test runs it, so the docs cannot drift from what the engine runs).
"""

from __future__ import annotations

import sys
from pathlib import Path

from runbooks import OBSERVATIONS, PRECONDITIONS, TERMS, Runbook, Step, all_runbooks

DOCS = Path(__file__).resolve().parent.parent / "docs" / "processes"
KEY_STATES = {"published": "published, not signing", "active": "published and signing",
              "removed": "deleted at the signer and removed from every provider"}
OWNER_STATES = {"published": "in the combined set, not signing",
                "active": "in the combined set and signing it",
                "removed": "left out of the combined set (kept in the key store)"}
SIG0_ACTIONS = {
    "add-successor": "a successor key is generated (or the one an interrupted attempt made is "
    "adopted); the KEY RRset at every signer becomes every key of the store",
    "roll-at-parent": "an UPDATE signed by the predecessor replaces the zone's KEY RRset at the "
    "parent with the successor (not sent when the parent already trusts the successor)",
    "retire-predecessor": "the predecessor's files move to the store's `retired/` directory "
    "(kept, never deleted); the KEY RRset at every signer becomes the successor alone",
    "discard-successor": "the successor's files move to the store's `retired/` directory; the "
    "KEY RRset at every signer becomes the predecessor alone",
}


def _step(step: Step, number: str, owner: bool = False) -> list[str]:
    lines = [f"### {number}. {step.title} (`{step.id}`)", ""]
    lines += [step.explain.strip(), ""] if step.explain else []
    for which, target in step.keys.items():
        name = "successor" if which == "new" else "predecessor"
        if owner:
            lines.append(f"- **{name}** owner KSK: {OWNER_STATES[target]}")
        else:
            lines.append(f"- **{name}** at the signer: {KEY_STATES[target]}")
    if step.sig0:
        lines.append(f"- **SIG(0) key store**: {SIG0_ACTIONS[step.sig0]}")
    with_ = {"with": "included", "without": "left out"}
    if step.member_keys:
        lines.append(f"- **keys**: the joining/leaving signer's keys are "
                     f"{with_[step.member_keys]} in every other signer's DNSKEY RRset")
    if step.member_cds:
        lines.append(f"- **CDS/CDNSKEY** at every signer: the joining/leaving signer's KSK "
                     f"{'is named' if step.member_cds == 'with' else 'is not named'}")
    if step.ns:
        lines.append(f"- **NS RRset** at every signer: the joining/leaving signer's NS names "
                     f"{with_[step.ns]}")
    if step.csync is not None:
        lines.append(f"- **CSYNC** (`0 1 NS`) at every signer: "
                     f"{'published' if step.csync else 'removed'}")
    if step.cds:
        lines.append(f"- **CDS/CDNSKEY** at every provider name the "
                     f"{'successor' if step.cds == 'new' else 'predecessor'} (and every other "
                     "signer's KSK)")
    for pre in step.precondition:
        lines.append(f"- **refused unless** {PRECONDITIONS[pre]}")
    for obs in step.observe:
        lines.append(f"- **waits until** {OBSERVATIONS[obs]}")
    if step.hold:
        joined = (" + " if step.hold_combine == "sum" else ", ").join(step.hold)
        expr = joined if step.hold_combine == "sum" else f"max({joined})"
        lines.append(f"- **then holds** {expr} + propagation_delay + safety_margin "
                     "from the moment of that observation")
    if step.term:
        lines.append(f"- RFC 7583 term: `{step.term}`")
    phases = ("act", "observe") if step.sig0 else ("act", "converge", "observe", "hold")
    states = ", ".join(f"`{step.id}:{p}`" for p in phases)
    lines += [f"- persisted states: {states}", ""]
    return lines


# Processes that re-plan from observation at every step: how each starts.
REPLANNED = {
    "sync": "Started by `multisigner sync ZONE` (in the foreground, holding the zone's lease) "
    "and, for owner-signed (Model 1) zones, by the daemon when the combined set needs "
    "re-signing; each step re-plans from what is observed.",
    "follow": "Started by the daemon (`multisigner run`) alone, on a scan that finds the "
    "DNSKEY RRset of a signer that rolls its own keys changed (a pre-published successor, a "
    "retired key gone); advanced by the daemon. See docs/following.md for how it tells a "
    "successor from a foreign key and how often the daemon looks.",
}


def render(book: Runbook) -> str:
    lines = [f"# {book.title}", "",
             "<!-- generated from runbooks/ by `python -m orchestrator.docs_render`; "
             "do not edit -->", "", book.summary.strip(), ""]
    if book.references:
        lines += ["References: " + "; ".join(book.references) + ".", ""]
    owner = book.model == 1 and book.kind == "ksk-rollover"
    if book.kind == "sig0-rollover":
        start = ("`multisigner rollover ZONE --key sig0 [--wait]` (a zone whose "
                 "`[zones.parent]` is `type = \"dsync\"`)")
    elif book.kind.startswith("signer-"):
        start = f"`multisigner signer {book.kind.split('-')[1]} ZONE NAME [--wait]`"
    elif owner:
        start = "`multisigner rollover ZONE --key ksk [--wait]` (the owner's KSK: no --signer)"
    else:
        start = f"`multisigner rollover ZONE --key {'|'.join(book.roles)} --signer NAME [--wait]`"
    before = ("the zone's SIG(0) key store must hold exactly one key of the zone, and "
              "the parent must answer KeyState that it trusts it (`sync` bootstraps it)"
              if book.kind == "sig0-rollover" else
              "the zone must be in its steady state (`sync` has nothing to do, the parent "
              "DS matches the CDS, `verify` finds no breach)")
    if book.kind in REPLANNED:
        lines += [REPLANNED[book.kind], "", "## Steps", ""]
    else:
        lines += [f"Started with {start}; advanced by `multisigner step ZONE`, `--wait`, or "
                  f"the daemon (`multisigner run`). Before it starts, {before}.", "",
                  "## Steps", ""]
    for i, step in enumerate(book.steps, 1):
        lines += _step(step, str(i), owner)
    lines += ["## Abort (`multisigner rollover ZONE --abort`)", ""]
    if book.kind in REPLANNED:
        lines += ["From any step: the process ends at once (aborted); it re-plans from "
                  "observation, so nothing of it needs undoing.", ""]
    by_from: dict[str, list[Step]] = {}
    for a in book.abort:
        for origin in a.from_:
            by_from.setdefault(origin, []).append(a)
    for step in book.steps if book.kind not in REPLANNED else ():
        path = by_from.get(step.id)
        if not path:
            why = ("the parent may already trust the successor alone"
                   if book.kind == "sig0-rollover" else
                   "the predecessor is being withdrawn; the zone is safe only going forward"
                   if not book.kind.startswith("signer-") else
                   "the delegation is changing; finish, then run the opposite signer process")
            lines += [f"From `{step.id}`: refused — {why}, so the process must finish.", ""]
            continue
        lines += [f"From `{step.id}`: " + " → ".join(f"`{ab.id}`" for ab in path), ""]
        for j, ab in enumerate(path, 1):
            lines += _step(ab, f"abort {j}", owner)
    lines += ["## Timing terms", ""]
    lines += [f"- `{name}`: {text}" for name, text in TERMS.items()]
    lines += ["- `propagation_delay`, `safety_margin`: from the zone's `[zones.policy]`", ""]
    return "\n".join(lines)


def pages() -> dict[Path, str]:
    return {DOCS / (f"{book.kind}.md" if book.model is None
                    else f"{book.kind}-model{book.model}.md"): render(book)
            for book in all_runbooks().values()}


def main(argv: list[str]) -> int:
    stale = [p for p, text in pages().items() if not p.exists() or p.read_text() != text]
    if "--check" in argv:
        for path in stale:
            print(f"out of date: {path} (run python -m orchestrator.docs_render)")
        return 1 if stale else 0
    DOCS.mkdir(parents=True, exist_ok=True)
    for path, text in pages().items():
        path.write_text(text)
    print(f"wrote {len(pages())} page(s) to {DOCS}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
