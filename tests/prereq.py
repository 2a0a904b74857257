"""What the suites need from the machine (server binaries, files, packages), and what a
missing one does: skip the test on a developer's machine, FAIL it in CI.

Every skip for a missing prerequisite goes through this module (a ``skipif`` mark from
:func:`needs` / :func:`needs_because`, or :func:`require` inside a test or fixture), and
its reason starts with :data:`PREFIX`. The report hook :func:`pytest_runtest_makereport`
(installed by tests/conftest.py) turns exactly those skips into failures when the
environment variable CI is "true" (GitHub Actions, GitLab CI and most others set it), with
a message naming what is missing: a CI image that lost a Debian package must not turn the
lab tests green by skipping them. Other skips (a test skipped because an earlier one
collected nothing to check) stay skips.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Generator, Iterable

import pytest

PREFIX = "missing prerequisite: "


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("true", "1", "yes")


def missing(*binaries: str, files: Iterable[str] = ()) -> str | None:
    """What of ``binaries`` (on PATH) and ``files`` is not here, or None."""
    gone = [b for b in binaries if shutil.which(b) is None]
    gone += [f for f in files if not os.path.exists(f)]
    return ", ".join(gone) if gone else None


def needs(*binaries: str, files: Iterable[str] = (), what: str = "") -> pytest.MarkDecorator:
    """A mark skipping (failing in CI) when a binary or file is missing; ``what`` says
    what installs them (e.g. "Debian package softhsm2")."""
    return needs_because(missing(*binaries, files=files), what)


def needs_because(why: str | None, what: str = "") -> pytest.MarkDecorator:
    """A mark skipping (failing in CI) when ``why`` (the caller's own check) is not None."""
    return pytest.mark.skipif(why is not None, reason=_reason(why, what))


def require(why: str | None, what: str = "") -> None:
    """Inside a test or fixture: skip (fail in CI) now when ``why`` is not None."""
    if why is not None:
        pytest.skip(_reason(why, what))


def require_binary(*binaries: str, what: str = "") -> None:
    require(missing(*binaries), what)


def _reason(why: str | None, what: str) -> str:
    return PREFIX + f"{why}" + (f" ({what})" if what else "")


def skip_reason(report: pytest.TestReport) -> str:
    """The reason of a skipped report ("" if it has none)."""
    longrepr = report.longrepr
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        return str(longrepr[2]).removeprefix("Skipped: ")
    return ""


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item,
                              call: pytest.CallInfo[None]) -> Generator[None, object, None]:
    outcome = yield
    report: pytest.TestReport = outcome.get_result()  # type: ignore[attr-defined]
    if not (report.skipped and in_ci()) or hasattr(report, "wasxfail"):
        return
    why = skip_reason(report)
    if why.startswith(PREFIX):
        report.outcome = "failed"
        report.longrepr = (f"CI is {os.environ.get('CI')!r}: a missing prerequisite fails "
                           f"the run instead of skipping {item.nodeid}: "
                           f"{why.removeprefix(PREFIX)}")
