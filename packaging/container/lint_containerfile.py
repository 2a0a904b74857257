"""Structural lint of packaging/container/Containerfile and run.sh, for a machine that
cannot build the image (no registry access for base images here): checks what makes the
image non-root, read-only-friendly and complete, without building it.

    python packaging/container/lint_containerfile.py        # exit 1 and the problems

It does not prove the image builds or runs; `podman build` + `run.sh` does (see
packaging/README.md).
"""

from __future__ import annotations

import json
import re
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
METRICS_PORT = "9477"


@dataclass(frozen=True)
class Instruction:
    line: int
    op: str
    args: str


def instructions(text: str) -> list[Instruction]:
    """The instructions, continuation lines joined, comments and blank lines dropped."""
    out: list[Instruction] = []
    pending: list[str] = []
    start = 0
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if not pending:
            start = number
        if line.startswith("#"):
            continue
        pending.append(line.removesuffix("\\").strip())
        if not line.endswith("\\"):
            op, _, args = " ".join(pending).partition(" ")
            out.append(Instruction(start, op.upper(), args.strip()))
            pending = []
    return out


def final_stage(found: list[Instruction]) -> list[Instruction]:
    starts = [i for i, ins in enumerate(found) if ins.op == "FROM"]
    return found[starts[-1]:] if starts else []


def _exec_form(ins: Instruction) -> list[str] | None:
    try:
        value = json.loads(ins.args)
    except ValueError:
        return None
    return value if isinstance(value, list) and all(isinstance(v, str) for v in value) else None


def check_bases(found: list[Instruction]) -> list[str]:
    out = []
    for ins in found:
        if ins.op == "FROM":
            image = ins.args.split()[0]
            tag = image.rsplit("/", 1)[-1]
            if (":" not in tag and "@" not in tag) or tag.endswith(":latest"):
                out.append(f"line {ins.line}: FROM {image}: pin a tag or digest (not latest)")
        if ins.op == "ADD":
            out.append(f"line {ins.line}: ADD: use COPY (ADD fetches URLs and unpacks)")
        if ins.op == "RUN" and re.search(r"\b(curl|wget)\b.*\|\s*(ba)?sh\b", ins.args):
            out.append(f"line {ins.line}: RUN pipes a download into a shell")
        if ins.op == "RUN" and "apt-get install" in ins.args and (
                "--no-install-recommends" not in ins.args
                or "rm -rf /var/lib/apt/lists" not in ins.args):
            out.append(f"line {ins.line}: apt-get install: use --no-install-recommends and "
                       "remove /var/lib/apt/lists in the same RUN")
    return out


def check_user(stage: list[Instruction]) -> list[str]:
    users = [ins for ins in stage if ins.op == "USER"]
    if not users:
        return ["the final stage sets no USER: the daemon would run as root"]
    user = users[-1].args.split(":")[0]
    if not user.isdigit() or user == "0":
        return [f"line {users[-1].line}: USER {users[-1].args}: use a numeric non-root uid "
                "(a runtime can then enforce runAsNonRoot)"]
    late = [ins for ins in stage if ins.op == "RUN" and ins.line > users[-1].line]
    return [f"line {ins.line}: RUN after USER: build steps belong before it" for ins in late]


def check_entry(stage: list[Instruction]) -> list[str]:
    out = []
    command: list[str] = []
    for op in ("ENTRYPOINT", "CMD"):
        found = [ins for ins in stage if ins.op == op]
        if not found:
            out.append(f"no {op} in the final stage")
            continue
        form = _exec_form(found[-1])
        if form is None:
            out.append(f"line {found[-1].line}: {op} must be in exec (JSON) form, so SIGTERM "
                       "reaches the daemon (it finishes its step and exits)")
        else:
            command += form
    if command and ("run" not in command or "--metrics-listen" not in command):
        out.append("the default command is not 'run --metrics-listen ...'")
    exposed = " ".join(ins.args for ins in stage if ins.op == "EXPOSE").split()
    if METRICS_PORT not in exposed:
        out.append(f"EXPOSE {METRICS_PORT} (the metrics port) is missing")
    health = [ins for ins in stage if ins.op == "HEALTHCHECK"]
    if not health or "/healthz" not in health[-1].args:
        out.append("no HEALTHCHECK probing /healthz")
    if not any(ins.op == "VOLUME" and "/var/lib/multisigner" in ins.args for ins in stage):
        out.append("no VOLUME for /var/lib/multisigner (the only writable state)")
    return out


def check_copies(found: list[Instruction], repo: Path) -> list[str]:
    out = []
    copied: set[str] = set()
    for ins in found:
        if ins.op != "COPY" or "--from=" in ins.args:
            continue
        *sources, _ = [a for a in ins.args.split() if not a.startswith("--")]
        for source in sources:
            copied.add(source.rstrip("/"))
            if not (repo / source).exists():
                out.append(f"line {ins.line}: COPY {source}: not in the repository")
    project = tomllib.loads((repo / "pyproject.toml").read_text())
    packages = project["tool"]["setuptools"]["packages"]["find"]["include"]
    for pattern in packages:
        name = pattern.rstrip("*")
        if name not in copied:
            out.append(f"package {name} (pyproject) is not copied into the image")
    return out


def check_run_script(text: str) -> list[str]:
    wanted = {"--read-only": "a read-only root filesystem",
              "--cap-drop=ALL": "no capabilities",
              "no-new-privileges": "no privilege gain through exec",
              "/etc/multisigner:/etc/multisigner:ro": "the config mounted read-only",
              "multisigner-state:/var/lib/multisigner": "a volume for the state and keys"}
    return [f"run.sh: {flag} missing ({why})" for flag, why in wanted.items()
            if flag not in text]


def lint(containerfile: Path, run_script: Path, repo: Path = REPO) -> list[str]:
    found = instructions(containerfile.read_text())
    stage = final_stage(found)
    if not stage:
        return ["no FROM: not a Containerfile"]
    return (check_bases(found) + check_user(stage) + check_entry(stage)
            + check_copies(found, repo) + check_run_script(run_script.read_text()))


def main() -> int:
    problems = lint(HERE / "Containerfile", HERE / "run.sh")
    for problem in problems:
        print(f"Containerfile: {problem}", file=sys.stderr)
    if not problems:
        print("Containerfile and run.sh: structure OK (not built: see packaging/README.md)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
