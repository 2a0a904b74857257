"""The human rendering of ``status``: one rich table per zone."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table


def render_status(items: list[dict[str, Any]], console: Console | None = None) -> None:
    console = console or Console(highlight=False, soft_wrap=True)
    for item in items:
        verdict = "[green]consistent[/]" if item["consistent"] else "[red]NOT consistent[/]"
        console.print(f"[bold]{item['name']}[/]  model {item['model']}  {verdict}")
        if "error" in item:
            console.print(f"  [red]cannot observe: {item['error']}[/]")
            continue
        table = Table(show_header=True, header_style="bold", box=None, pad_edge=False)
        for column in ("signer", "key tag", "role", "alg", "origin", "in CDS"):
            table.add_column(column)
        # Key tags are not identities: one tag can name two signers' keys. A tag shown for
        # more than one distinct key gets each key's fingerprint.
        prints: dict[int, set[str]] = {}
        for signer in item["signers"]:
            for key in signer["dnskeys"]:
                prints.setdefault(key["key_tag"], set()).add(key.get("fingerprint", ""))
        for signer in item["signers"]:
            bad = [s for s in signer["servers"] if not s["ok"]]
            if not signer["dnskeys"]:
                table.add_row(signer["name"], "[red]-[/]", "", "", "",
                              "; ".join(s["error"] or "" for s in bad))
            for i, key in enumerate(signer["dnskeys"]):
                tag = str(key["key_tag"])
                if len(prints[key["key_tag"]]) > 1:
                    tag += f"~{key['fingerprint']}"
                table.add_row(signer["name"] if i == 0 else "", tag, key["role"],
                              str(key["algorithm"]), key["origin"] or "?",
                              "yes" if key.get("in_cds") else "")
            if item["model"] == 1 and signer.get("dnskey_rrsig_expires"):
                table.add_row("", "[dim]RRSIG[/]", "", "", "",
                              f"expires {signer['dnskey_rrsig_expires']}")
            if signer.get("api_error"):
                table.add_row("", "[yellow]API[/]", "", "", "", signer["api_error"])
        console.print(table)
        ds = ", ".join(d.split()[0] for d in item["parent"]["ds"]) or "none"
        console.print(f"  parent DS: {ds}")
        parent = item["parent"]
        if parent.get("channel", "cds-scan") != "cds-scan":
            key = parent.get("sig0_key")
            console.print(f"  parent channel: {parent['channel']}; SIG(0) key "
                          f"{key if key is not None else 'none yet'}: "
                          f"{parent.get('key_state') or 'unknown'}"
                          + (f" ({parent['error']})" if parent.get("error") else ""))
        proc = item.get("process")
        if proc:
            console.print(f"  process: {proc['kind']} {proc['id'][:8]} state {proc['state']}"
                          + (f", waiting for {proc['waiting_for']}" if proc["waiting_for"] else "")
                          + (f" until {proc['next_check_at']}" if proc["next_check_at"] else ""))
        for note in item.get("notes", []):
            console.print(f"  [yellow]note[/]: {note}")
        for f in item.get("findings", []):
            style = "red" if f["severity"] == "breach" else "yellow"
            console.print(f"  [{style}]{f['severity']} {f['code']}[/]: {f['message']}")
