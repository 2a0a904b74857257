"""The README demo: a real multi-provider Model 2 sync on the local lab.

Starts the lab (PowerDNS parent ``test.`` + three PowerDNS providers serving
``example.test.`` with their own keys + the parent agent scanning CDS/CSYNC + Unbound), shows the
broken starting point, syncs, and proves validation through Unbound (AD bit). Every step
is the real ``multisigner`` command, printed before it runs. The lab is always torn down.
"""

from __future__ import annotations

import argparse
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _banner(text: str) -> None:
    print(f"\n\033[1;36m### {text}\033[0m", flush=True)


def _run(cmd: list[str], *, check: bool = True) -> int:
    print(f"\033[1m$ {shlex.join(cmd)}\033[0m", flush=True)
    rc = subprocess.run(cmd, check=False).returncode
    if check and rc != 0:
        raise SystemExit(f"demo step failed (exit {rc}): {shlex.join(cmd)}")
    return rc


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="./dev demo")
    parser.add_argument("--providers", type=int, default=None,
                        help="number of providers (default 3 for model 2, 2 for model 1)")
    parser.add_argument("--model", type=int, choices=[1, 2], default=2,
                        help="2: PowerDNS providers with their own KSKs (default); 1: Knot "
                        "offline-KSK providers, the owner KSK in SoftHSM2")
    parser.add_argument("--keep", action="store_true", help="leave the lab running at the end")
    args = parser.parse_args(argv)

    from multisigner_lab.cli import lab_down, lab_up

    exe = str(Path(sys.executable).with_name("multisigner"))
    directory = Path(tempfile.mkdtemp(prefix="multisigner-demo-"))
    try:
        _banner(f"starting the lab in {directory}")
        count = args.providers or (3 if args.model == 2 else 2)
        lab = lab_up(directory, providers=count, zones=["example.test."], ttl=2,
                     model=args.model)
        ms = [exe, "--config", str(lab.config_path)]
        print(f"config written to {lab.config_path}")
        _banner("check: config, provider APIs and nameservers")
        _run([*ms, "check"])
        if args.model == 2:
            _banner("before sync: each provider serves only its own keys; the parent's DS "
                    "names every provider's KSK")
            _run([*ms, "verify", "example.test."], check=False)
            _banner("sync: cross-import keys, publish CDS/CDNSKEY, wait for the parent DS")
        else:
            _banner("before sync: the Knot providers have no owner-signed key set yet")
            _run([*ms, "verify", "example.test."], check=False)
            _banner("sync: the owner KSK (in SoftHSM2) signs the combined DNSKEY RRset; every "
                    "Knot imports it")
        _run([*ms, "sync", "example.test."])
        pause = max(lab.ttl, lab.ds_ttl) + 0.5
        _banner(f"waiting {pause:.1f}s: resolvers may cache the pre-sync DNSKEY/DS RRsets for "
                "their TTL, and verify counts those until they expire")
        time.sleep(pause)
        _banner("status")
        _run([*ms, "status", "example.test."])
        _banner("verify: the RFC 8901 invariant holds")
        _run([*ms, "verify", "example.test."])
        _banner("idempotent: a second sync changes nothing")
        _run([*ms, "sync", "example.test."])
        if args.model == 2:
            _banner("rollover: p1's ZSK, pre-publish, timed by the observed TTLs")
            _run([*ms, "rollover", "example.test.", "--key", "zsk", "--signer", "p1", "--wait"])
            _banner("rollover: p0's KSK, double signature, the parent DS follows the CDS")
            _run([*ms, "rollover", "example.test.", "--key", "ksk", "--signer", "p0", "--wait"])
        else:
            _banner("rollover: k0's ZSK enters and leaves the owner-signed set")
            _run([*ms, "rollover", "example.test.", "--key", "zsk", "--signer", "k0", "--wait"])
            _banner("rollover: the owner KSK, double signature, the parent DS follows")
            _run([*ms, "rollover", "example.test.", "--key", "ksk", "--wait"])
        time.sleep(pause)
        _banner("verify after the rollovers")
        _run([*ms, "verify", "example.test."])
        host, port = lab.resolver
        dig = shutil.which("dig")
        _banner("validation through Unbound: the answer carries the AD bit")
        if dig:
            _run([dig, f"@{host}", "-p", str(port), "+dnssec", "+multiline", "www.example.test.",
                  "A"])
        ad = _ad_bit(host, port)
        print(f"AD bit on www.example.test. A via Unbound: {'set' if ad else 'NOT set'}")
        _banner("history and audit")
        _run([*ms, "history", "example.test."])
        _run([*ms, "audit", "verify"])
        if not ad:
            raise SystemExit("demo failed: Unbound did not validate the synced zone")
        _banner("demo finished: zone synced across providers and validating")
        return 0
    finally:
        if args.keep:
            print(f"\nlab left running; stop it with: {exe} lab down --dir {directory}")
        else:
            _banner("tearing the lab down")
            lab_down(directory)
            shutil.rmtree(directory, ignore_errors=True)


def _ad_bit(host: str, port: int) -> bool:
    import dns.flags
    import dns.message
    import dns.query

    query = dns.message.make_query("www.example.test.", "A", want_dnssec=True)
    query.flags |= dns.flags.AD
    answer = dns.query.udp(query, host, port=port, timeout=5)
    return bool(answer.flags & dns.flags.AD)


if __name__ == "__main__":
    sys.exit(main())
