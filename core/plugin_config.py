"""``[[providers]]`` of a type no built-in adapter handles: an adapter some installed
package registers in the ``multisigner.providers`` entry-point group.

Only what every provider has is checked here (name, nameservers); the adapter's own
settings are kept as given and validated against the adapter's ``config_model`` when
``providers.registry`` loads it. The type itself is checked at load: a type that no
installed package claims is a config error listing the installed ones.
"""

from __future__ import annotations

from datetime import timedelta
from importlib.metadata import entry_points
from typing import Any

from pydantic import ConfigDict, Field, field_validator

from core.config_types import Duration, Fqdn, HostPort, _Strict

ENTRY_POINT_GROUP = "multisigner.providers"


def registered_types() -> set[str]:
    """The provider types installed packages register (names only: nothing is imported
    here, so a broken adapter package cannot break loading an unrelated config)."""
    return {ep.name for ep in entry_points(group=ENTRY_POINT_GROUP)}


def installed_types() -> list[str]:
    """Every type a ``[[providers]]`` table may name: built in or registered."""
    from core.provider_config import BUILTIN_TYPES

    return sorted(set(BUILTIN_TYPES) | registered_types())


class PluginProviderConfig(_Strict):
    """A provider served by a third-party adapter; its extra keys are the adapter's."""

    model_config = ConfigDict(extra="allow", frozen=True)

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    type: str
    nameservers: list[HostPort] = Field(min_length=1)
    ns_names: list[Fqdn] = Field(default_factory=list)
    timeout: Duration = timedelta(seconds=10)

    @field_validator("type")
    @classmethod
    def _known(cls, value: str) -> str:
        if value not in registered_types():
            raise ValueError(
                f"unknown provider type {value!r}; installed: {', '.join(installed_types())} "
                f"(a third-party adapter registers its type in the {ENTRY_POINT_GROUP!r} "
                "entry-point group of its package; is that package installed in this "
                "environment?)")
        return value

    def settings(self) -> dict[str, Any]:
        """Every key of the table, the adapter's own included, for its config model."""
        return {**self.model_dump(), **(self.model_extra or {})}
