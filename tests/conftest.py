"""Shared by every suite: this file's directory (tests/) goes on sys.path (pytest's
prepend import mode), so the suites' helper modules (``survivors``, ``rollover.rollkit``,
...) import the same way whichever test file a worker happens to collect first."""
