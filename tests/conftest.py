"""Shared by every suite: this file's directory (tests/) goes on sys.path (pytest's
prepend import mode), so the suites' helper modules (``survivors``, ``rollover.rollkit``,
...) import the same way whichever test file a worker happens to collect first.

Under CI=true a test skipped for a missing prerequisite (a server binary, a package: see
prereq.py) fails instead of skipping."""

from prereq import pytest_runtest_makereport

__all__ = ["pytest_runtest_makereport"]
