"""``check`` for a zone whose parent is driven by DSYNC/UPDATE (``[zones.parent] type =
"dsync"``): the SIG(0) key directory is usable, and what the parent offers — which
channel the zone will use (UPDATE to the DSYNC target, or CDS scanning when the parent
publishes no UPDATE endpoint) and whether the receiver publishes its own KEY."""

from __future__ import annotations

from typing import Any

import dns.name

from core.config import ZoneConfig
from core.errors import MultisignerError
from providers.parent import DsyncParent


async def dsync_parent_check(zone: ZoneConfig, nameservers: list[str]) -> dict[str, Any]:
    """One ``check`` item (``label``, ``zone``, ``ok``, ``problems``, ``notes``)."""
    label = f"zone {zone.name} parent (dsync)"
    notes: list[str] = []
    try:
        parent = DsyncParent(dns.name.from_text(zone.name), zone.parent, nameservers)
        keys = parent.store.list_keys(zone.name)
        notes.append("SIG(0) key(s): " + ", ".join(
            f"{k.key_id} (tag {k.key_tag})" for k in keys) if keys else
            f"no SIG(0) key yet: the first use makes one ({zone.parent.sig0_algorithm})")
        found = await parent.discover()
        notes.append(f"channel: {found.channel}")
        if found.endpoint is not None:
            receiver_keys = await parent.receiver_keys(found)
            notes.append(f"the receiver at {found.endpoint.target} publishes "
                         f"{len(receiver_keys)} KEY(s); its answers are "
                         + ("checked against them" if receiver_keys else "taken unsigned"))
    except MultisignerError as exc:
        return {"label": label, "zone": zone.name, "ok": False, "problems": [str(exc)],
                "notes": notes}
    return {"label": label, "zone": zone.name, "ok": True, "problems": [], "notes": notes}


async def dsync_parent_status(zone: ZoneConfig, nameservers: list[str]) -> dict[str, Any]:
    """``status``'s view of a dsync parent: the channel in use, the zone's SIG(0) key and
    the parent's view of it (KeyState: unknown / bootstrapping / trusted / refused).
    Read-only: no key is made here; errors are reported in the item, not raised."""
    item: dict[str, Any] = {"channel": "dsync", "sig0_key": None, "key_state": None,
                            "error": None}
    try:
        parent = DsyncParent(dns.name.from_text(zone.name), zone.parent, nameservers)
        keys = parent.store.list_keys(zone.name)
        item["sig0_key"] = keys[0].key_tag if keys else None
        found = await parent.discover()
        item["channel"] = found.channel
        if keys and found.endpoint is not None:
            item["key_state"] = (await parent.key_state()).view.value
    except MultisignerError as exc:
        item["error"] = str(exc)
    return item
