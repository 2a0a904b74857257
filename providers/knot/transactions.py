"""Knot zone state and knotc zone transactions: whether a zone is loaded, making knotd pick
up key changes, and the one transaction shape the adapter uses (apex NS/CSYNC).

Facts this relies on (Knot 3.2.6, verified):

* A zone in offline-KSK mode does not load before its first SKR; ``knotc zone-reload``
  loads it then, ``knotc zone-keys-load`` is what a loaded zone needs (it answers OK on an
  unloaded zone but loads nothing). A key timer changed with keymgr is seen by knotd only
  after ``zone-keys-load``.
* Knot keeps one transaction per zone, server-side, across knotc calls: a second
  ``zone-begin`` fails ("too many transactions") until it is committed or aborted. A
  failed ``zone-set``/``zone-unset`` (``such record already exists``, ``not exists``,
  ``parser failed``) leaves the transaction open with what came before it.
* The commit re-signs the changed RRsets with Knot's ZSK (the owner's RRSIGs over
  DNSKEY/CDS/CDNSKEY stay), bumps the serial and flushes the zone file, so the change
  survives ``zone-keys-load``, SKR imports, ``zone-reload`` and restarts. A commit with an
  empty diff changes nothing (no serial bump).
* ``knotc -b zone-keys-load`` on a zone with an open transaction wedges knotd's control
  socket for good: an open transaction is dealt with first (:meth:`reclaim`).
* ``knotc zone-set ZONE OWNER TTL TYPE DATA...`` joins the DATA words with spaces, so
  record data is passed word by word (no argument needs shell quoting).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from dataclasses import dataclass

from core.errors import ProviderError, ProviderUnreachable
from providers.knot.commands import LOGGER, KnotCommands

# What this adapter changes in a zone transaction (see ZoneTransactions.reclaim).
TRANSACTION_TYPES = frozenset({"NS", "CSYNC"})


@dataclass(frozen=True)
class ZoneStatus:
    loaded: bool  # knotd serves the zone (it has a serial)
    transaction: bool  # a knotc zone transaction is open


class ZoneTransactions:
    """Zone status, key loading and apex transactions of one Knot provider; one
    adapter-side lock per zone, since Knot allows one open transaction per zone."""

    def __init__(self, commands: KnotCommands) -> None:
        self._cmd = commands
        self._locks: dict[str, asyncio.Lock] = {}

    def lock(self, zone: str) -> asyncio.Lock:
        return self._locks.setdefault(zone, asyncio.Lock())

    async def status(self, zone: str) -> ZoneStatus:
        """``knotc zone-status``: ZoneMissing for a zone Knot does not know."""
        text = await self._cmd.run("knotc", "zone-status", zone, zone=zone)
        fields: dict[str, str] = {}
        for part in text.split("|"):
            name, _, value = part.strip().partition(":")
            fields[name.strip().rpartition("]")[2].strip()] = value.strip()
        if "serial" not in fields:
            raise self._cmd.error(
                f"cannot tell from knotc zone-status whether the zone is loaded: "
                f"{text.strip()!r}",
                zone=zone, endpoint=f"knotc zone-status {zone}",
            )
        return ZoneStatus(
            loaded=fields["serial"] not in ("", "-", "none"),
            transaction=fields.get("transaction") == "open",
        )

    async def reclaim(self, zone: str) -> None:
        """Abort a zone transaction a killed run of ours left open, or refuse.

        Knot's transactions outlive the knotc that began them: a controller killed between
        ``zone-begin`` and ``zone-commit`` leaves one open. Its diff tells ours apart: this
        adapter only ever changes the apex NS and CSYNC RRsets and ACME TXT RRsets in a
        transaction, and only under the controller's zone lease, so an open transaction
        whose diff is empty or touches nothing else is the leftover of a killed run and is
        aborted. Anything else is someone else's work: refused, untouched."""
        diff = await self._cmd.run("knotc", "zone-diff", zone, zone=zone)
        lines = [ln.strip() for ln in diff.splitlines() if ln.strip()]
        foreign = [ln for ln in lines if not (own_diff_line(ln, zone) or acme_line(ln))]
        if foreign:
            raise self._cmd.error(
                "another zone transaction is open at Knot, changing more than this "
                f"controller writes ({'; '.join(foreign[:3])}"
                f"{' ...' if len(foreign) > 3 else ''}): finish it (`knotc zone-commit "
                f"{zone}` or `knotc zone-abort {zone}`) and retry; nothing changed",
                zone=zone, endpoint=f"knotc zone-diff {zone}",
            )
        await self._cmd.run("knotc", "zone-abort", zone, zone=zone)
        LOGGER.warning(
            "%s: aborted an open zone transaction on %s left by a killed run (diff: %s)",
            self._cmd.name, zone, "; ".join(lines) or "empty",
            extra={"provider": self._cmd.name, "zone": zone},
        )

    async def load_keys(self, zone: str, *, reload: bool = False) -> None:
        """Make knotd pick up KASP changes (blocking until re-signed): ``zone-keys-load``
        on a loaded zone; on a zone not loaded (an offline-KSK zone without SKR records
        cannot load) ``zone-reload`` when ``reload`` (after an SKR import), else nothing:
        the next import loads it with the keys as they are then."""
        async with self.lock(zone):
            status = await self.status(zone)
            if status.transaction:  # -b would wedge knotd's control socket
                await self.reclaim(zone)
            if status.loaded:
                await self._cmd.run("knotc", "zone-keys-load", zone, zone=zone, options=["-b"])
            elif reload:
                await self._cmd.run("knotc", "zone-reload", zone, zone=zone, options=["-b"])

    async def replace_apex(
        self, zone: str, rtype: str, records: Sequence[str], ttl: int, *, remove: bool
    ) -> None:
        """One transaction making ``records`` the apex ``rtype`` RRset: ``zone-begin``,
        ``zone-unset ZONE @ TYPE`` (when ``remove``), ``zone-set`` per record,
        ``zone-commit``; on any failure ``zone-abort``. The caller holds :meth:`lock`."""
        await self.begin(zone)
        try:
            if remove:
                try:
                    await self._cmd.run("knotc", "zone-unset", zone, "@", rtype, zone=zone)
                except ProviderUnreachable:
                    raise
                except ProviderError as exc:
                    if "not exists" not in str(exc):  # gone since we read it: fine
                        raise
            for data in records:
                await self._cmd.run("knotc", "zone-set", zone, "@", str(ttl), rtype,
                                    *data.split(), zone=zone)
            await self._cmd.run("knotc", "zone-commit", zone, zone=zone)
        except BaseException:
            # shielded: a cancelled caller must not leave the transaction open either
            with contextlib.suppress(Exception):
                await asyncio.shield(self._cmd.run("knotc", "zone-abort", zone, zone=zone))
            raise

    async def begin(self, zone: str) -> None:
        # zone-begin failing means another transaction is open: a killed run's (aborted)
        # or someone else's (refused), see reclaim.
        for attempt in (1, 2):
            try:
                await self._cmd.run("knotc", "zone-begin", zone, zone=zone)
                return
            except ProviderUnreachable:
                raise
            except ProviderError as exc:
                if "too many transactions" not in str(exc) or attempt == 2:
                    raise
                await self.reclaim(zone)


ACME_LABELS = ("_acme-challenge.", "_validation-persist.")


def _diff_change(line: str) -> tuple[str, str] | None:
    """(owner, type) of a ``knotc zone-diff`` line (``[zone.] +owner TTL TYPE DATA``)."""
    text = line.strip()
    if text.startswith("["):
        text = text.partition("]")[2].strip()
    parts = text.split(None, 3)
    if len(parts) < 3 or parts[0][:1] not in "+-":
        return None
    rtype = parts[2] if parts[1].isdigit() else parts[1]
    return parts[0][1:], rtype.upper()


def own_diff_line(line: str, zone: str) -> bool:
    """Whether a zone-diff line is a change this adapter makes in a transaction at the
    apex: the NS or CSYNC RRset."""
    change = _diff_change(line)
    return change is not None and absolute(change[0]) == absolute(zone) and \
        change[1] in TRANSACTION_TYPES


def acme_line(line: str) -> bool:
    """Whether a zone-diff line changes a TXT RRset at an ACME name."""
    change = _diff_change(line)
    return change is not None and change[1] == "TXT" and \
        absolute(change[0]).startswith(ACME_LABELS)


def absolute(name: str) -> str:
    """``name`` lower-cased with a trailing dot."""
    name = name.lower()
    return name if name.endswith(".") else name + "."
