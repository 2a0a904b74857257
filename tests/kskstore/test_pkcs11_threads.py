"""Stores used from many threads at once, as the daemon does (it signs zones in worker
threads): python-pkcs11 initializes the module with C_Initialize(NULL), so SoftHSM2 runs
without its own mutexes and two threads inside it corrupt its heap. Before the store
serialized every call, this crashed the process (SIGSEGV / "malloc(): unaligned fastbin
chunk detected") on every run; the daemon died the same way under the Model 1 tests.

The threads run in a child process: a crash there is a failed assertion here, not a dead
test worker.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from test_pkcs11_module_env import MODULE, NEEDS_SOFTHSM, PIN, REPO, make_hsm

SCRIPT = """
import sys, threading
from providers.kskstore.pkcs11store import Pkcs11KskStore

module, pin, conf, token, rounds = *sys.argv[1:5], int(sys.argv[5])

def store():
    return Pkcs11KskStore(module=module, token_label=token, pin=pin,
                          key_label_prefix="threads", module_env={"SOFTHSM2_CONF": conf})

keep = store()  # holds the shared session while the threads open and close theirs
key = keep.generate()
failed = []

def work():
    try:
        for _ in range(rounds):
            with store() as s:  # opening lists tokens while other threads sign
                assert key.key_id in [k.key_id for k in s.list_keys()]
                s.signer(key.key_id).sign(b"data" * 64)
    except Exception as exc:
        failed.append(repr(exc))

threads = [threading.Thread(target=work) for _ in range(8)]
for t in threads:
    t.start()
for t in threads:
    t.join()
keep.close()
print("failed:", failed[:3])
sys.exit(1 if failed else 0)
"""


@NEEDS_SOFTHSM
@pytest.mark.lab
def test_stores_in_many_threads_do_not_crash_the_module(tmp_path: Path) -> None:
    hsm = make_hsm(tmp_path, "tok-threads")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, MODULE, PIN, hsm.conf, hsm.token, "150"],
        capture_output=True, text=True, env=env, timeout=240, check=False,
    )
    assert done.returncode == 0, (done.returncode, done.stdout, done.stderr[-2000:])
