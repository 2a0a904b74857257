"""``multisigner check`` refuses a zone whose signers cannot do what its model needs,
naming the provider, its type and the missing capability (here: Cloudflare, which cannot
publish the controller's CDS/CDNSKEY, as a Model 2 signer), and notes the processes a
signer's gaps will refuse (signer add/remove without MANAGE_NS)."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.cli import main

CONFIG = """\
[state]
url = "sqlite:///{db}"

[[providers]]
name = "d0"
type = "desec"
api_url = "http://127.0.0.1:9/api/v1"
token = "t"
nameservers = ["127.0.0.1:9"]
timeout = "1s"
retry_budget = "1s"

[[providers]]
name = "c0"
type = "cloudflare"
api_url = "http://127.0.0.1:9/client/v4"
token = "t"
nameservers = ["127.0.0.1:9"]
timeout = "1s"
retry_budget = "1s"

[[zones]]
name = "example.test"
model = 2
signers = {signers}
"""


def check(tmp_path: Path, capsys: pytest.CaptureFixture[str], signers: str) -> tuple[int, str]:
    path = tmp_path / "ms.toml"
    path.write_text(CONFIG.format(db=tmp_path / "state.db", signers=signers))
    rc = main(["--config", str(path), "check"])
    return rc, capsys.readouterr().out


def test_a_signer_lacking_the_models_capability_is_refused_by_name(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc, out = check(tmp_path, capsys, '["d0", "c0"]')
    assert rc == 1
    assert "zone example.test.: 1 problem(s)" in out
    assert ("provider c0 (cloudflare) cannot publish cds; it cannot be a signer of a "
            "model 2 (cross-import) zone (docs/providers/cloudflare.md)") in out
    assert ("zone example.test.: note: provider d0 (desec) cannot manage ns: signer "
            "add/remove will be refused while it is a signer") in out


def test_signers_that_can_are_not_refused(tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    _, out = check(tmp_path, capsys, '["d0"]')
    assert "zone example.test.: note: provider d0 (desec) cannot manage ns" in out
    assert "problem" not in out.split("zone example.test.", 1)[1]
