"""A local multi-signer lab of real DNS servers for tests, the demo and benchmarks.

    with Lab.start(tmp_path, providers=2) as lab:
        lab.config_path      # multisigner.toml for the controller
        lab.resolver         # validating Unbound (address, port)

See :mod:`orchestrator.lab.lab` for what runs, and docs/lab-notes.md for the recipes.
"""

from __future__ import annotations

from orchestrator.lab.errors import LabError
from orchestrator.lab.lab import Lab
from orchestrator.lab.model1 import Model1Lab
from orchestrator.lab.powerdns import CryptoKey
from orchestrator.lab.server import Server

__all__ = ["CryptoKey", "Lab", "LabError", "Model1Lab", "Server"]
