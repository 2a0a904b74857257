"""``multisigner audit verify | checkpoint | seal``: the authenticated history.

What is protected, and what is not, is written up in docs/threat-model.md. In short: with
a ``[history]`` key, a rewrite of the history by someone who can write the database but
does not hold the key is detected; deleting the newest entries is detected only against
a checkpoint exported earlier and kept out of that person's reach.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

from core.config import Config
from core.errors import ConfigError, UsageError
from state.audit import ChainReport
from state.checkpoint import Checkpoint, authenticate, parse_checkpoint
from state.history_key import HistoryKey, load_history_key
from state.store import StateStore

NO_KEY_NOTE = (
    "without a [history] key the history is only tamper-evident against accidental "
    "change, not against an attacker with write access to the database: set history.key "
    "or history.key_file (see docs/threat-model.md)"
)
DEFAULT_SEAL_REASON = (
    "operator checked the history and authenticated the entries written before a "
    "[history] key was configured"
)


def history_key(config: Config, config_path: Path | None = None) -> HistoryKey | None:
    """The configured history key; ConfigError (exit 2) naming history.key[_file]."""
    if config.history is None:
        return None
    secret = config.history.key
    return load_history_key(
        secret.get_secret_value() if secret is not None else None,
        config.history.key_file,
        config_path=config_path,
    )


def open_store(config: Config, config_path: Path | None = None) -> StateStore:
    """The state store, authenticating every history entry it writes when a key is set."""
    return StateStore.open(config.state.url, history_key=history_key(config, config_path))


def run_audit(args: argparse.Namespace, config: Config, config_path: Path) -> int:
    """Run one ``audit`` action; the caller maps exceptions to exit codes."""
    if args.checkpoint and args.action != "verify":
        raise UsageError("--checkpoint is an option of 'audit verify'")
    if args.out and args.action != "checkpoint":
        raise UsageError("--out is an option of 'audit checkpoint'")
    if args.reason is not None and args.action != "seal":
        raise UsageError("--reason is an option of 'audit seal'")
    checkpoint = _read_checkpoint(args.checkpoint) if args.checkpoint else None
    store = open_store(config, config_path)
    try:
        if args.action == "checkpoint":
            return _checkpoint(store, args)
        if args.action == "seal":
            return _seal(store, args)
        key = store.history_key
        if checkpoint is not None:
            if key is None:
                raise ConfigError(f"{config_path}: verifying a checkpoint needs the [history] "
                                  "key it was made with: set history.key or history.key_file")
            authenticate(checkpoint, key, args.checkpoint)
        report = store.verify_chain(checkpoint)
    finally:
        store.close()
    _show_verify(report, key, checkpoint, args)
    return 0 if report.ok else 1


def _read_checkpoint(source: str) -> Checkpoint:
    try:
        text = Path(source).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        why = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise UsageError(f"checkpoint {source}: cannot read: {why}") from None
    return parse_checkpoint(text, source)


def _show_verify(report: ChainReport, key: HistoryKey | None,
                 checkpoint: Checkpoint | None, args: argparse.Namespace) -> None:
    note = None if key is not None else NO_KEY_NOTE
    if args.json:
        _out(json.dumps({
            "ok": report.ok, "checked": report.checked,
            "first_bad_seq": report.first_bad_seq, "problem": report.problem,
            "authenticated": key is not None,
            "key_id": key.key_id if key is not None else None,
            "authenticated_entries": report.authenticated,
            "unauthenticated_entries": report.unauthenticated,
            "first_authenticated_seq": report.first_authenticated,
            "head_hash": report.head_hash,
            "checkpoint": None if checkpoint is None else {
                "file": args.checkpoint, **checkpoint.body(), "ok": report.ok},
            "note": note,
        }))
        return
    if not report.ok:
        where = (f"BROKEN at entry {report.first_bad_seq}" if report.first_bad_seq
                 else "NOT AUTHENTICATED")
        _out(f"history chain {where}: {report.problem}")
    elif key is None:
        _out(f"history chain OK: {report.checked} entries verified")
    else:
        _out(f"history chain OK: {report.checked} entries verified, MACs checked with "
             f"[history] key id {key.key_id}")
    if report.ok and report.unauthenticated and key is not None:
        _out(f"note: the first {report.unauthenticated} entries precede the first "
             f"authenticated one (seq {report.first_authenticated}) and have no MAC: check "
             "them ('multisigner history ZONE'), then run 'multisigner audit seal'")
    if report.ok and checkpoint is not None:
        _out(f"checkpoint {args.checkpoint} ({checkpoint.time}): all {checkpoint.entries} "
             "entries it saw are present and unchanged")
    if note is not None:
        print(f"note: {note}", file=sys.stderr, flush=True)
        if report.authenticated:
            print(f"note: {report.authenticated} entries carry a MAC that was not checked "
                  "(no [history] key in this config)", file=sys.stderr, flush=True)


def _checkpoint(store: StateStore, args: argparse.Namespace) -> int:
    checkpoint = store.checkpoint()
    text = json.dumps(checkpoint.as_json(), indent=2) + "\n"
    if not args.out:
        _out(text.rstrip("\n"))
        return 0
    _write_atomically(Path(args.out), text)
    if args.json:
        _out(json.dumps({"checkpoint": checkpoint.as_json(), "out": args.out}))
    else:
        _out(f"checkpoint of {checkpoint.entries} entries (head {checkpoint.head_hash[:16]}, "
             f"{checkpoint.time}) written to {args.out}; keep a copy where whoever can write "
             "the state database cannot change it")
    return 0


def _write_atomically(path: Path, text: str) -> None:
    """Replace *path* in one step, so an older checkpoint is never left half-overwritten.
    A checkpoint holds no secret: mode 0644."""
    directory = path.parent if str(path.parent) else Path()
    try:
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as out:
                out.write(text)
                out.flush()
                os.fsync(out.fileno())
            os.chmod(tmp, 0o644)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    except OSError as exc:
        raise UsageError(f"--out {path}: cannot write: {exc.strerror}") from None


def _seal(store: StateStore, args: argparse.Namespace) -> int:
    from orchestrator.runtime import default_actor

    result = store.seal_history(actor=default_actor(), reason=args.reason or
                                DEFAULT_SEAL_REASON)
    if args.json:
        _out(json.dumps({"sealed": result.sealed if result else 0,
                         "through_seq": result.through if result else None,
                         "seal_seq": result.entry.seq if result else None}))
    elif result is None:
        _out("nothing to seal: every history entry is already authenticated")
    else:
        _out(f"sealed {result.sealed} entries (seq 1..{result.through}); recorded as history "
             f"entry {result.entry.seq}")
    return 0


def _out(line: str) -> None:
    print(line, flush=True)
