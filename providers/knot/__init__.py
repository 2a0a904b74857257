"""Knot DNS as a Model 1 (offline-KSK) signer: ``providers.knot.adapter.KnotProvider``."""
