"""The layers the folders show, enforced: decisions are pure, shared types depend on
nothing above them, adapters and state never reach into the orchestrator, and nothing in
the product imports the lab (the CLI's ``lab`` command loads it lazily, by design).

Imports are read from the source (every ``import``, also those inside functions), so a
lazy import cannot slip an I/O module into the decision layer unnoticed."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PRODUCT = ("core", "orchestrator", "providers", "state", "runbooks")

# What decision code may import: pure standard library, dnspython's data classes (not its
# query, resolver or zone-transfer machinery), cryptography's primitives, pydantic, and
# the layers below it.
PURE_STDLIB = {"__future__", "abc", "base64", "binascii", "collections", "dataclasses",
               "datetime", "enum", "functools", "hashlib", "hmac", "itertools", "json",
               "math", "operator", "re", "struct", "typing", "types", "string", "textwrap"}
IO_DNS = {"dns.query", "dns.asyncquery", "dns.resolver", "dns.asyncresolver",
          "dns.asyncbackend", "dns.inet", "dns.xfr", "dns.tsigkeyring"}


def _modules(package: str) -> Iterator[Path]:
    yield from sorted((REPO / package).rglob("*.py"))


def _imports(path: Path) -> Iterator[tuple[str, int, bool]]:
    """(module, line, at top level) for every import in ``path``."""
    tree = ast.parse(path.read_text(), str(path))
    top = {id(n) for n in tree.body}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno, id(node) in top
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module, node.lineno, id(node) in top


def _root(module: str) -> str:
    return module.split(".", maxsplit=1)[0]


def _pure(module: str) -> bool:
    root = _root(module)
    if root in PURE_STDLIB or module in PURE_STDLIB:
        return True
    if root == "dns":
        return not any(module == m or module.startswith(m + ".") for m in IO_DNS)
    if root in ("cryptography", "pydantic", "core", "runbooks"):
        return True
    return module.startswith("orchestrator.decide")


@pytest.mark.parametrize("path", list(_modules("orchestrator/decide")),
                         ids=lambda p: p.name)
def test_decisions_import_no_io(path: Path) -> None:
    impure = [f"{path.name}:{line}: {mod}" for mod, line, _ in _imports(path) if not _pure(mod)]
    assert impure == [], "decision code must stay pure (data in, decision out)"


def test_core_stays_pure_too() -> None:
    """The shared types sit below everything: what they import, decisions may import."""
    impure = [f"{p.relative_to(REPO)}:{line}: {mod}" for p in _modules("core")
              for mod, line, _ in _imports(p)
              if not _pure(mod) and mod not in ("tomllib", "ipaddress", "os", "pathlib",
                                                "time", "urllib.parse", "sqlalchemy.engine",
                                                "sqlalchemy.exc", "stat",
                                                # plugin provider types: entry-point
                                                # names of installed packages (metadata)
                                                "importlib.metadata")]
    assert impure == []


@pytest.mark.parametrize("package", ["core", "providers", "state", "runbooks"])
def test_lower_layers_never_import_the_orchestrator(package: str) -> None:
    above = {"core": ("orchestrator", "providers", "state", "multisigner_lab"),
             "runbooks": ("orchestrator", "providers", "state", "multisigner_lab"),
             "providers": ("orchestrator", "state", "multisigner_lab"),
             "state": ("orchestrator", "providers", "multisigner_lab")}[package]
    wrong = [f"{p.relative_to(REPO)}:{line}: {mod}" for p in _modules(package)
             for mod, line, _ in _imports(p) if _root(mod) in above]
    assert wrong == []


def test_the_product_does_not_import_the_lab() -> None:
    wrong = []
    for package in PRODUCT:
        for path in _modules(package):
            for mod, line, top in _imports(path):
                lazy_cli = path == REPO / "orchestrator" / "cli.py" and not top
                if _root(mod) == "multisigner_lab" and not lazy_cli:
                    wrong.append(f"{path.relative_to(REPO)}:{line}: {mod}")
    assert wrong == []


def test_the_checks_see_real_imports(tmp_path: Path) -> None:
    """The scanner itself: a lazy I/O import, an engine import and a lab import are caught."""
    probe = tmp_path / "probe.py"
    probe.write_text("import dns.rdata\nfrom orchestrator.engine import runner\n"
                     "def f():\n    import dns.query\n    import multisigner_lab.proc\n")
    assert [m for m, _, _ in _imports(probe) if not _pure(m)] == [
        "orchestrator.engine", "dns.query", "multisigner_lab.proc"]
