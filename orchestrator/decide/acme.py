"""ACME DNS-01 and dns-persist-01 decisions: pure (data in, decision out, no I/O).

What lives here: which name an ACME client's FQDN is validated at, whether a value is a
DNS-01 digest, where a CNAME chain may lead, how a TXT RRset changes when a value is
added or removed (other values untouched: a wildcard and an apex order, or two parallel
orders, share one name), whether one nameserver's answer serves the value and validates
under the DNSKEY RRset that server serves, and the dns-persist-01 record text.

Facts this relies on:

* RFC 8555 sec. 8.4: the TXT record at ``_acme-challenge.<domain>`` holds the base64url
  (unpadded) SHA-256 digest of the key authorization: 43 characters. For a wildcard
  ``*.example.com`` the domain is ``example.com``.
* The CA resolves that name like any resolver: CNAMEs are followed (the common
  "challenge zone" delegation), and DNSSEC answers are validated.
* draft-ietf-acme-dns-persist: ``_validation-persist.<domain>`` TXT whose RDATA is an
  RFC 8659 sec. 4.2 issue-value: ``issuer-domain-name; accounturi=URI[; policy=wildcard]
  [; persistUntil=UNIX-SECONDS]``; the issuer domain name lower-case A-label without a
  trailing dot (at most 253 octets); a parameter value is printable ASCII without ``;``.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import dns.dnssec
import dns.exception
import dns.name
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rrset
from dns.exception import ValidationFailure

from core.errors import UsageError

CHALLENGE_LABEL = "_acme-challenge"
PERSIST_LABEL = "_validation-persist"
MAX_CHAIN = 8  # CNAME hops followed before giving up (resolvers stop around 8-16)
_DIGEST = re.compile(r"^[A-Za-z0-9_-]{43}$")
_ISSUER_LABEL = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")
_URI = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://[^/\s;]+[\x21-\x3a\x3c-\x7e]*$")


class ChainError(UsageError):
    """The challenge name cannot be placed in a configured zone (exit 1: it is the DNS,
    not the command line, that is wrong)."""

    exit_code = 1


# ----------------------------------------------------------------------------- names


def validation_name(fqdn: str, label: str | None = CHALLENGE_LABEL) -> dns.name.Name:
    """The name the CA queries for ``fqdn``: ``label.fqdn`` with a leading ``*.``
    dropped. A name that already starts with ``label`` is taken as is (acme.sh passes the
    full challenge name). ``label`` None: ``fqdn`` is the TXT record's owner name itself,
    as lego's exec provider passes it -- after following a CNAME at the challenge name
    (``_acme-challenge.www.example.com`` CNAME ``www.chal.example.net`` reaches the hook
    as ``www.chal.example.net.``), so no label may be put in front of it."""
    text = fqdn.strip()
    if text.startswith("*.") and label is not None:
        text = text[2:]
    try:
        name = dns.name.from_text(text)
    except dns.exception.DNSException as exc:
        raise UsageError(f"{fqdn!r} is not a domain name ({exc})") from None
    if len(name.labels) < 3:  # root + at least two labels
        raise UsageError(f"{fqdn!r} is not a domain name an ACME CA validates")
    if label is None or name.labels[0].lower() == label.encode():
        return name
    try:
        return dns.name.Name((label.encode(), *name.labels))
    except dns.exception.DNSException as exc:
        raise UsageError(f"{label}.{text} is not a valid domain name ({exc})") from None


def check_digest(value: str) -> str:
    """``value`` if it is a DNS-01 TXT value (base64url SHA-256, 43 characters)."""
    text = value.strip()
    if not _DIGEST.match(text):
        raise UsageError(
            f"{value!r} is not an ACME DNS-01 value: expected the unpadded base64url "
            f"SHA-256 digest of the key authorization, 43 characters of A-Z a-z 0-9 - _ "
            f"(got {len(text)} characters)")
    raw = base64.urlsafe_b64decode(text + "=")
    if base64.urlsafe_b64encode(raw).decode().rstrip("=") != text:
        raise UsageError(f"{value!r} is not canonical base64url (its last character "
                         "carries bits a SHA-256 digest does not have)")
    return text


def zone_of(name: dns.name.Name, zones: Iterable[dns.name.Name]) -> dns.name.Name | None:
    """The configured zone ``name`` is in (the longest matching one), or None."""
    found = [z for z in zones if name.is_subdomain(z)]
    return max(found, key=lambda z: len(z.labels)) if found else None


def check_hop(chain: Sequence[dns.name.Name], target: dns.name.Name) -> None:
    """Refuse a CNAME hop from ``chain[-1]`` to ``target`` that loops or runs too long."""
    if target in chain:
        loop = " -> ".join(n.to_text() for n in (*chain, target))
        raise ChainError(f"CNAME loop: {loop}; a CA would fail too: fix the CNAME records")
    if len(chain) > MAX_CHAIN:
        raise ChainError(f"CNAME chain longer than {MAX_CHAIN} hops from "
                         f"{chain[0].to_text()}; shorten it")


@dataclass(frozen=True)
class NameAnswer:
    """What one authoritative server said about one name (reduced by the I/O layer)."""

    server: str
    kind: str  # "cname", "data", "nodata", "nxdomain", "referral", "error"
    target: dns.name.Name | None = None  # kind == "cname"
    detail: str = ""


def agreed_target(name: dns.name.Name, answers: Sequence[NameAnswer]) -> dns.name.Name | None:
    """The CNAME target every server gives for ``name`` (None: no CNAME, the name holds
    the data itself). Servers that disagree make the CA's view random: refused."""
    bad = [a for a in answers if a.kind in ("error", "referral")]
    if bad:
        raise ChainError(f"cannot tell where {name.to_text()} leads: " + "; ".join(
            f"{a.server}: {a.detail or a.kind}" for a in bad))
    targets = {a.target for a in answers}
    if len(targets) > 1:
        raise ChainError(
            f"the nameservers disagree about {name.to_text()} (a CA would see either, at "
            "random): " + "; ".join(
                f"{a.server}: {'CNAME ' + a.target.to_text() if a.target else a.kind}"
                for a in answers))
    return next(iter(targets)) if targets else None


# ----------------------------------------------------------------------------- TXT sets


def txt_text(record: str) -> str:
    """The value of a TXT record in presentation format (its strings concatenated)."""
    rd = dns.rdata.from_text(dns.rdataclass.IN, dns.rdatatype.TXT, record)
    return b"".join(rd.strings).decode("utf-8", "replace")  # type: ignore[attr-defined]


def txt_record(value: str) -> str:
    """``value`` as one TXT record in presentation format, split into strings of at most
    255 octets (the CA concatenates them)."""
    data = value.encode()
    chunks = [data[i:i + 255] for i in range(0, len(data), 255)] or [b""]
    return " ".join('"' + c.decode().replace("\\", "\\\\").replace('"', '\\"') + '"'
                    for c in chunks)


def with_value(records: Sequence[str], value: str) -> list[str] | None:
    """The RRset with ``value`` added; None when it is there already."""
    if any(txt_text(r) == value for r in records):
        return None
    return sorted([*records, txt_record(value)])


def without_values(records: Sequence[str], drop: Iterable[str]) -> list[str] | None:
    """The RRset without the records whose value is in ``drop``; None when none is."""
    gone = set(drop)
    kept = [r for r in records if txt_text(r) not in gone]
    return None if len(kept) == len(records) else kept


def challenge_values(records: Sequence[str]) -> list[str]:
    """The values of ``records`` that look like DNS-01 digests (cleanup without a
    value removes these and leaves any other TXT record alone)."""
    return [v for v in (txt_text(r) for r in records) if _DIGEST.match(v)]


# ----------------------------------------------------------------------------- serving


@dataclass(frozen=True)
class ServedTxt:
    """What one nameserver address serves at the challenge name."""

    provider: str
    server: str  # as configured (host:port)
    address: str  # the address queried
    txt: dns.rrset.RRset | None = None
    sigs: dns.rrset.RRset | None = None
    dnskey: dns.rrset.RRset | None = None
    error: str | None = None


def served_problem(s: ServedTxt, values: Sequence[str], zone: dns.name.Name, *,
                   signed: bool, now: datetime) -> str | None:
    """Why ``s`` does not serve every one of ``values`` validly; None when it does.
    ``signed``: the zone is DNSSEC-signed (some server serves a DNSKEY RRset), so the TXT
    RRset must validate under the DNSKEY RRset this server serves."""
    if s.error:
        return s.error
    have = {b"".join(rd.strings).decode("utf-8", "replace") for rd in s.txt or []}
    missing = [v for v in values if v not in have]
    if missing:
        return f"does not serve {', '.join(missing)} yet"
    if not signed:
        return None
    assert s.txt is not None  # values is not empty
    if s.sigs is None:
        return "serves the TXT RRset without an RRSIG"
    if s.dnskey is None:
        return "serves no DNSKEY RRset to validate the TXT RRset with"
    try:
        dns.dnssec.validate(s.txt, s.sigs, {zone: s.dnskey}, now=now.timestamp())
    except ValidationFailure as exc:
        return f"the TXT RRset does not validate under its DNSKEY RRset ({exc})"
    return None


def absent_problem(s: ServedTxt, values: Sequence[str]) -> str | None:
    """Why ``s`` still serves one of ``values`` (after cleanup); None when it does not."""
    if s.error:
        return s.error
    have = {b"".join(rd.strings).decode("utf-8", "replace") for rd in s.txt or []}
    left = [v for v in values if v in have]
    return f"still serves {', '.join(left)}" if left else None


# ----------------------------------------------------------------------------- persist


@dataclass(frozen=True)
class PersistRecord:
    issuer: str
    account_uri: str
    wildcard: bool = False
    persist_until: int | None = None  # UNIX seconds

    @property
    def value(self) -> str:
        parts = [self.issuer, f"accounturi={self.account_uri}"]
        if self.wildcard:
            parts.append("policy=wildcard")
        if self.persist_until is not None:
            parts.append(f"persistUntil={self.persist_until}")
        return "; ".join(parts)


def check_issuer(issuer: str) -> str:
    """The issuer domain name normalized (lower case, no trailing dot), or UsageError."""
    text = issuer.strip().rstrip(".").lower()
    if not text.isascii():
        raise UsageError(f"issuer {issuer!r}: use the A-label (punycode) form, e.g. "
                         "xn--...; the record must be ASCII")
    labels = text.split(".")
    if len(text) > 253 or len(labels) < 2 or not all(_ISSUER_LABEL.match(x) for x in labels):
        raise UsageError(f"issuer {issuer!r} is not a domain name (the CA's issuer domain "
                         "name, as in its issuerDomainNames, e.g. letsencrypt.org)")
    return text


def check_account_uri(uri: str) -> str:
    """An absolute URI without whitespace or ';' (RFC 8659 parameter value), https only
    (ACME account URLs and the CAs' hashed-URI prefixes are https)."""
    text = uri.strip()
    if not _URI.match(text) or not text.lower().startswith("https://"):
        raise UsageError(
            f"account URI {uri!r} is not an https:// URI without spaces or ';' (give the "
            "ACME account URL, or the CA's hashed account URI)")
    return text


def persist_until(text: str, now: datetime) -> int:
    """``--persist-until``: a UNIX timestamp, or an ISO 8601 date/time (UTC unless it
    says otherwise); it must lie in the future."""
    raw = text.strip()
    try:
        when = (datetime.fromtimestamp(int(raw), UTC) if raw.isdigit()
                else datetime.fromisoformat(raw.replace("Z", "+00:00")))
    except (ValueError, OverflowError, OSError):
        raise UsageError(f"--persist-until {text!r}: give a date (2027-01-31), a date and "
                         "time (2027-01-31T12:00:00Z) or UNIX seconds") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    if when <= now:
        raise UsageError(f"--persist-until {text!r} is not in the future")
    return int(when.timestamp())


def persist_params(value: str) -> tuple[str, dict[str, str]]:
    """(issuer, {tag lower-cased: value}) of an issue-value; ("", {}) if it is none."""
    issuer, _, rest = value.partition(";")
    params: dict[str, str] = {}
    for part in rest.split(";"):
        tag, sep, val = part.strip().partition("=")
        if sep:
            params[tag.strip().lower()] = val.strip()
    return issuer.strip().lower(), params


def replaces(existing: str, new: PersistRecord) -> bool:
    """Whether an existing record is the one ``new`` supersedes: same issuer, same
    account (its policy or persistUntil may change); other issuers' records stay."""
    issuer, params = persist_params(existing)
    return issuer == new.issuer and params.get("accounturi") == new.account_uri
