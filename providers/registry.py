"""Which adapter serves a ``[[providers]]`` table: its ``type`` looked up in the
``multisigner.providers`` entry-point group.

multisigner's own adapters are registered there too (pyproject.toml), and also listed in
``BUILTIN`` so that a checkout run from source, whose entry points are not installed,
still finds them (tests/providers/test_registry.py keeps the two lists equal). A
third-party package ships an adapter by declaring, in its own pyproject.toml::

    [project.entry-points."multisigner.providers"]
    mydns = "mydns_multisigner:MyDnsProvider"

where ``MyDnsProvider`` subclasses ``providers.base.Provider``, sets ``type_name =
"mydns"`` and ``config_model`` (a pydantic model of its table), and takes that model's
instance in its constructor. See docs/providers/writing-an-adapter.md.
"""

from __future__ import annotations

from collections.abc import Callable
from importlib.metadata import EntryPoint, entry_points
from typing import cast

from pydantic import BaseModel, ValidationError

from core.errors import ConfigError
from core.provider_config import (
    BUILTIN_TYPES,
    ENTRY_POINT_GROUP,
    AnyProviderConfig,
    PluginProviderConfig,
)
from providers.base import Provider

BUILTIN: dict[str, str] = {
    "powerdns": "providers.powerdns:PowerDNSProvider",
    "knot": "providers.knot.adapter:KnotProvider",
    "rfc2136": "providers.rfc2136.adapter:Rfc2136Provider",
    "desec": "providers.desec.adapter:DesecProvider",
    "cloudflare": "providers.cloudflare.adapter:CloudflareProvider",
    "route53": "providers.route53.adapter:Route53Provider",
    "ns1": "providers.ns1.adapter:Ns1Provider",
}
assert set(BUILTIN) == set(BUILTIN_TYPES), "core.provider_config.BUILTIN_TYPES is stale"


def registered() -> dict[str, str]:
    """type → ``module:attribute`` for every installed adapter (built in or third party).
    A third-party package cannot take over a built-in type: its entry point is ignored
    unless it names the built-in object itself."""
    found = dict(BUILTIN)
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name not in BUILTIN:
            found[ep.name] = ep.value
    return found


def _installed() -> str:
    return ", ".join(sorted(registered()))


def adapter_class(type_name: str) -> type[Provider]:
    """The adapter class registered for ``type_name``; ConfigError (naming the type, what
    went wrong and the installed types) if none is, or if it cannot be loaded."""
    target = registered().get(type_name)
    if target is None:
        raise ConfigError(f"unknown provider type {type_name!r}; installed: {_installed()} "
                          f"(adapters register in the {ENTRY_POINT_GROUP!r} entry-point group)")
    try:
        loaded = EntryPoint(name=type_name, value=target, group=ENTRY_POINT_GROUP).load()
    except Exception as exc:  # any import-time failure of third-party code
        raise ConfigError(
            f"provider type {type_name!r}: its adapter {target} failed to load "
            f"({exc.__class__.__name__}: {exc}); reinstall or fix the package that provides "
            f"it. Installed types: {_installed()}") from None
    if not (isinstance(loaded, type) and issubclass(loaded, Provider)):
        raise ConfigError(f"provider type {type_name!r}: {target} is not a subclass of "
                          "providers.base.Provider; the package registering it is broken. "
                          f"Installed types: {_installed()}")
    return loaded


def adapter_config(config: AnyProviderConfig, cls: type[Provider]) -> BaseModel:
    """The settings the adapter's constructor takes: a built-in type's table is already
    validated by core; a third-party table is validated here by the adapter's own model."""
    if not isinstance(config, PluginProviderConfig):
        return config
    model = cls.config_model
    if model is None:
        raise ConfigError(f"provider {config.name!r} (type {config.type!r}): the adapter "
                          f"{cls.__module__}.{cls.__qualname__} declares no config_model")
    try:
        return model.model_validate(config.settings())
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '(table)'}: {err['msg']}"
            for err in exc.errors(include_input=False, include_url=False))
        raise ConfigError(f"providers: {config.name!r} (type {config.type!r}): "
                          f"{problems}") from None


def build_provider(config: AnyProviderConfig) -> Provider:
    """The adapter for a configured provider; the config's ``type`` selects it."""
    cls = adapter_class(config.type)
    # Every adapter's constructor takes its validated settings (the base class only names
    # the provider, so the class itself is not typed as that factory).
    factory = cast(Callable[[BaseModel], Provider], cls)
    return factory(adapter_config(config, cls))


def check_config(configs: list[AnyProviderConfig]) -> None:
    """Load every configured third-party adapter and validate its settings now, so a broken
    adapter or a wrong key is a config error before anything is touched. (Built-in tables
    are validated by core at load; their adapters are imported when first used.)"""
    for config in configs:
        if isinstance(config, PluginProviderConfig):
            adapter_config(config, adapter_class(config.type))

