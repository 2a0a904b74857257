"""A local multi-signer lab of real DNS servers for tests, the demo and benchmarks.

    with Lab.start(tmp_path, providers=2) as lab:
        lab.config_path      # multisigner.toml for the controller
        lab.resolver         # validating Unbound (address, port)

See :mod:`lab.lab` and :mod:`lab.model1` for what runs, and docs/lab.md for the server
recipes.
"""

from __future__ import annotations

from lab.errors import LabError
from lab.lab import Lab
from lab.model1 import Model1Lab
from lab.powerdns import CryptoKey
from lab.server import Server

__all__ = ["CryptoKey", "Lab", "LabError", "Model1Lab", "Server"]
