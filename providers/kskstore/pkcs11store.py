"""KSKs generated on, and never leaving, a PKCS#11 token (an HSM; SoftHSM2 in tests).

Keys are EC key pairs made on the token (``CKA_TOKEN``, ``CKA_SENSITIVE``, not
``CKA_EXTRACTABLE``), labelled ``<key_label_prefix>-<UTC time>`` with a random
``CKA_ID`` shared by the private and the public object; the label is the key id.

Verified facts this module relies on (SoftHSM2 2.6.1, python-pkcs11 0.10.1; docs/lab.md):

- SoftHSM2 rejects ``CKM_ECDSA_SHA256``: the data is hashed here and the digest signed
  with ``CKM_ECDSA``, which returns r||s — already the RRSIG form (RFC 6605).
- A login belongs to the token *per process*: a second ``C_Login`` gives
  ``CKR_USER_ALREADY_LOGGED_IN`` (even with a wrong PIN), and python-pkcs11's
  ``Session.close()`` calls ``C_Logout``, logging out every session. Stores on the same
  token therefore share one session (the last store closes it) and a second store's PIN
  is compared with the one that logged in.
- The module reads its configuration (``SOFTHSM2_CONF``) once, when initialized
  (``C_Initialize``: first load, or a re-initialization after ``C_Finalize``). Hence
  ``module_env``: variables set in ``os.environ`` before the module is loaded. One process
  holds one copy of a module, so all its stores must agree on them; when they differ from
  the ones the module was initialized with, the module is re-initialized with the new
  values if no store of this process has a session on it (``C_Finalize`` would end those),
  else the store refuses to open.
- SoftHSM2 never locks a PIN; real HSMs do (``CKF_USER_PIN_LOCKED``).

Every PKCS#11 error is turned into a KeyStoreError in :meth:`Pkcs11KskStore._calling`.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from asn1crypto.keys import ECDomainParameters  # type: ignore[import-untyped]
from cryptography.hazmat.primitives.serialization import load_der_public_key
from dns.dnssectypes import Algorithm
from pkcs11 import Attribute, KeyType, Mechanism, MechanismFlag, ObjectClass
from pkcs11 import exceptions as p11
from pkcs11.util.ec import encode_ec_public_key, encode_named_curve_parameters

from core.algorithms import ECDSA_PARAMS
from providers.kskstore.base import (
    KeyStoreError,
    StoredKey,
    StoreSigner,
    dnskey_of,
)
from providers.kskstore.pkcs11session import (
    _SHARED,
    _SHARED_LOCK,
    Pkcs11Session,
    _Shared,
)

_CURVES = {
    Algorithm.ECDSAP256SHA256: "secp256r1",
    Algorithm.ECDSAP384SHA384: "secp384r1",
}
_TIME = "%Y%m%dT%H%M%SZ"


# The labels of every private key on a token, read at most every LABEL_INDEX_SECONDS per
# process: listing one zone's keys used to read the label of every key on the token, which
# made a cycle over N zones sharing one token O(N^2) (1,000 zones: ~9 min of CPU). Labels
# only -- object handles belong to a session. A key made by this process is seen at once
# (generate drops the index); one made elsewhere within LABEL_INDEX_SECONDS.
LABEL_INDEX_SECONDS = 5.0
_LABELS: dict[tuple[str, bytes], tuple[float, tuple[tuple[str, bytes], ...]]] = {}
# (module, token serial, label, CKA_ID, algorithm) -> the key as listed
_STORED: dict[tuple[str, bytes, str, bytes, int], StoredKey] = {}



class Pkcs11KskStore(Pkcs11Session):
    """Owner KSKs on the PKCS#11 token ``token_label`` of ``module``."""

    def __init__(
        self,
        *,
        module: str,
        token_label: str,
        pin: str,
        key_label_prefix: str = "multisigner-ksk",
        algorithm: Algorithm | int = Algorithm.ECDSAP256SHA256,
        module_env: Mapping[str, str] | None = None,
    ) -> None:
        self.module = module
        self.module_env = dict(module_env or {})
        self.token_label = token_label
        self.prefix = key_label_prefix
        self.name = f"pkcs11 token {token_label!r} ({module})"
        self.algorithm = Algorithm(algorithm)
        if self.algorithm not in _CURVES:
            raise self.error(f"{self.algorithm.name} keys are not supported; use ECDSAP256SHA256")
        self._shared: _Shared | None = None
        self._shared_key: tuple[str, bytes] | None = None
        with _SHARED_LOCK:  # no other store may re-initialize the module meanwhile
            lib = self._load()
            token = self._token(lib)
            self._open(token, pin)

    # -- keys ---------------------------------------------------------------------------

    def _ours(self, label: str) -> bool:
        return label.startswith(self.prefix + "-")

    def _index(self, session: Any, *, fresh: bool) -> tuple[tuple[str, bytes], ...]:
        """(label, CKA_ID) of every private key on the token; see ``_LABELS``."""
        key = self._shared_key
        now = time.monotonic()
        cached = _LABELS.get(key) if key is not None else None
        if cached is not None and not fresh and now - cached[0] < LABEL_INDEX_SECONDS:
            return cached[1]
        objects = session.get_objects({Attribute.CLASS: ObjectClass.PRIVATE_KEY})
        index = tuple((o[Attribute.LABEL] or "", bytes(o[Attribute.ID] or b"")) for o in objects)
        if key is not None:
            _LABELS[key] = (now, index)
            known = set(index)
            for gone in [k for k in _STORED if k[:2] == key and (k[2], k[3]) not in known]:
                del _STORED[gone]
        return index

    def _listed(self, session: Any) -> list[StoredKey]:
        """This store's keys: the index filtered by our prefix; a key's public part is read
        from the token once per process (a (label, CKA_ID) pair names one key: a new key
        gets a new random CKA_ID even under a reused label)."""
        out: list[StoredKey] = []
        for label, oid in self._index(session, fresh=False):
            if not self._ours(label):
                continue
            cache = (*self._shared_key, label, oid, int(self.algorithm)) \
                if self._shared_key is not None else None
            stored = _STORED.get(cache) if cache is not None else None
            if stored is None:
                try:
                    stored = self._stored_by_id(session, label, oid)
                except KeyStoreError:
                    if (label, oid) not in self._index(session, fresh=True):
                        continue  # deleted (elsewhere) since the index was read
                    raise
                if cache is not None:
                    _STORED[cache] = stored
            out.append(stored)
        return out

    def _stored(self, session: Any, private: Any) -> StoredKey:
        return self._stored_by_id(session, private[Attribute.LABEL],
                                  bytes(private[Attribute.ID] or b""))

    def _stored_by_id(self, session: Any, label: str, oid: bytes) -> StoredKey:
        """The key labelled ``label`` with CKA_ID ``oid``, read from its public object (one
        token search; the private key's type and curve are the public key's)."""
        publics = list(
            session.get_objects({Attribute.CLASS: ObjectClass.PUBLIC_KEY, Attribute.ID: oid})
        )
        if len(publics) != 1:
            raise self.error(
                f"found {len(publics)} public keys with the CKA_ID of the private key "
                f"{label!r}; the token must hold exactly one",
                label,
            )
        found = publics[0]
        if found.key_type != KeyType.EC:
            raise self.error(
                f"the key labelled {label!r} is a {KeyType(found.key_type).name} key, not "
                f"{self.algorithm.name}; rename it or change key_label_prefix",
                label,
            )
        curve = ECDomainParameters.load(found[Attribute.EC_PARAMS]).chosen.native
        if curve != _CURVES[self.algorithm]:
            raise self.error(
                f"the key labelled {label!r} is on curve {curve}, but this store is "
                f"configured for {self.algorithm.name} ({_CURVES[self.algorithm]})",
                label,
            )
        public = load_der_public_key(encode_ec_public_key(found))
        created = None
        with contextlib.suppress(ValueError):
            stamp = label[len(self.prefix) + 1 :].split("-", 1)[0]
            created = datetime.strptime(stamp, _TIME).replace(tzinfo=UTC)
        return StoredKey(key_id=label, dnskey=dnskey_of(public, self.algorithm), created=created)

    def list_keys(self) -> list[StoredKey]:
        with self._calling("list keys") as session:
            keys = self._listed(session)
        labels = [k.key_id for k in keys]
        for label in sorted({x for x in labels if labels.count(x) > 1}):
            raise self.error(f"several private keys are labelled {label!r}; relabel them")
        return sorted(keys, key=lambda k: (k.created or datetime.min.replace(tzinfo=UTC), k.key_id))

    def generate(self) -> StoredKey:
        with self._calling("generate a key") as session:
            taken = {label for label, _ in self._index(session, fresh=True)}  # must be new
            now = datetime.now(UTC).replace(microsecond=0)
            label, n = f"{self.prefix}-{now.strftime(_TIME)}", 1
            while label in taken:
                n += 1
                label = f"{self.prefix}-{now.strftime(_TIME)}-{n}"
            params = session.create_domain_parameters(
                KeyType.EC,
                {Attribute.EC_PARAMS: encode_named_curve_parameters(_CURVES[self.algorithm])},
                local=True,
            )
            public, private = params.generate_keypair(
                id=os.urandom(16),
                label=label,
                store=True,
                capabilities=MechanismFlag.SIGN | MechanismFlag.VERIFY,
                private_template={
                    Attribute.SENSITIVE: True,
                    Attribute.EXTRACTABLE: False,
                    Attribute.PRIVATE: True,
                    Attribute.SIGN: True,
                    Attribute.DERIVE: False,
                },
                public_template={Attribute.VERIFY: True},
            )
            if private[Attribute.EXTRACTABLE] or not private[Attribute.SENSITIVE]:
                private.destroy()
                public.destroy()
                raise self.error(
                    "the token made the new private key extractable or not sensitive despite "
                    "the template; the key was destroyed — use a token that honours it",
                    label,
                )
            stored = self._stored(session, private)
            if self._shared_key is not None:
                _LABELS.pop(self._shared_key, None)
        return stored

    def signer(self, key_id: str) -> StoreSigner:
        with self._calling("find the key", key_id) as session:
            found = list(
                session.get_objects(
                    {Attribute.CLASS: ObjectClass.PRIVATE_KEY, Attribute.LABEL: key_id}
                )
            )
            if len(found) != 1:
                raise self.error(
                    f"expected one private key labelled {key_id!r} on the token, found "
                    f"{len(found)}",
                    key_id,
                )
            private = found[0]
            stored = self._stored(session, private)
        hash_name, octets = ECDSA_PARAMS[self.algorithm][1], ECDSA_PARAMS[self.algorithm][2]

        def raw_sign(data: bytes, deterministic: bool) -> bytes:
            digest = hashlib.new(hash_name, data).digest()
            with self._calling("sign", key_id):
                signature = bytes(private.sign(digest, mechanism=Mechanism.ECDSA))
            if len(signature) != 2 * octets:
                raise self.error(
                    f"the token returned a {len(signature)}-byte ECDSA signature, expected "
                    f"r||s of {2 * octets} bytes",
                    key_id,
                )
            return signature

        return StoreSigner(stored, raw_sign=raw_sign, store=self.name)

    def close(self) -> None:
        with _SHARED_LOCK:
            shared, self._shared = self._shared, None
            if shared is None:
                return
            shared.refs -= 1
            if shared.refs == 0:  # the last store of this token: log out, close
                if self._shared_key is not None:
                    _SHARED.pop(self._shared_key, None)
                with contextlib.suppress(p11.PKCS11Error):
                    shared.session.close()
