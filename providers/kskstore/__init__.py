"""The zone owner's KSK stores for Model 1 (docs/configuration.md,
``[zones.owner_ksk]``): PEM/BIND key files, a PKCS#11 token, or AWS KMS.

    from providers.kskstore import make_store, sign_rrset
    with make_store(zone_config.owner_ksk) as store:
        ksk = store.list_keys()[-1] if store.list_keys() else store.generate()
        rrsigs = sign_rrset(dnskey_rrset, store, ksk.key_id, zone, inception, expiration)

The PKCS#11 and KMS modules are imported only when such a store is opened.
"""

from core.owner_ksk import OwnerKskConfig
from providers.kskstore.base import (
    KeyStoreError,
    KskStore,
    StoredKey,
    StoreSigner,
    make_store,
    sign_rrset,
    sign_rrset_with,
)

__all__ = [
    "KeyStoreError",
    "KskStore",
    "OwnerKskConfig",
    "StoreSigner",
    "StoredKey",
    "make_store",
    "sign_rrset",
    "sign_rrset_with",
]
