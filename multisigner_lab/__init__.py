"""A local multi-signer lab of real DNS servers for tests, the demo and benchmarks.

    with Lab.start(tmp_path, providers=2) as lab:
        lab.config_path      # multisigner.toml for the controller
        lab.resolver         # validating Unbound (address, port)

See :mod:`lab.lab` and :mod:`lab.model1` for what runs, and docs/lab.md for the server
recipes.
"""

from __future__ import annotations

from multisigner_lab.errors import LabError
from multisigner_lab.lab import Lab
from multisigner_lab.model1 import Model1Lab
from multisigner_lab.powerdns import CryptoKey
from multisigner_lab.server import Server

__all__ = ["CryptoKey", "Lab", "LabError", "Model1Lab", "Server"]
