"""Opening a PKCS#11 token for the owner-KSK store: loading the module with its
environment, finding the token, and the one logged-in session every store of this process
shares on that token; every PKCS#11 error turned into a KeyStoreError in one place.

Verified facts (SoftHSM2 2.6.1, python-pkcs11 0.10.1) are in ``pkcs11store``'s docstring."""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import os
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import pkcs11
from dns.dnssectypes import Algorithm
from pkcs11 import TokenFlag
from pkcs11 import exceptions as p11

from providers.kskstore.base import KskStore


@dataclass
class _Shared:
    """The one logged-in session of a token that every store of this process uses.

    ``Session.close()`` calls ``C_Logout``, which logs out *every* session of the
    process; so stores on one token share a session and the last one closes it.
    """

    session: Any
    pin_digest: bytes
    refs: int = 0


# (module path, token serial) -> the shared session of that token.
_SHARED: dict[tuple[str, bytes], _Shared] = {}
# Held for *every* PKCS#11 call of this process, not per session: python-pkcs11 calls
# C_Initialize(NULL), which promises the module that no two threads call it at once, so
# SoftHSM2 turns its own mutexes off; the daemon signs zones in worker threads, and two
# threads in the module (even on different sessions, or one listing tokens while another
# signs) corrupted its heap ("malloc(): unaligned fastbin chunk", SIGSEGV). HSM calls take
# milliseconds; one lock costs little. Reentrant: opening a store loads the module, finds
# the token and logs in under it.
_SHARED_LOCK = threading.RLock()
# module path as loaded -> (python-pkcs11's lib object, os.environ when a store of this
# process (re-)initialized it): what the module read its configuration from.
_LOADED_ENV: dict[str, tuple[Any, dict[str, str]]] = {}



def _digest(pin: str) -> bytes:
    return hashlib.sha256(b"multisigner-pkcs11-pin\0" + pin.encode()).digest()



class Pkcs11Session(KskStore):
    """The opening half of ``Pkcs11KskStore``."""

    module: str
    module_env: dict[str, str]
    token_label: str
    algorithm: Algorithm
    _shared: _Shared | None
    _shared_key: tuple[str, bytes] | None

    # -- opening ------------------------------------------------------------------------

    def _load(self) -> Any:
        if not os.path.exists(self.module):
            raise self.error(
                f"the PKCS#11 module {self.module} does not exist; install it (SoftHSM2: "
                "`apt install softhsm2`) or set owner_ksk.module to your HSM vendor's library"
            )
        try:
            return self._load_with_env()
        except p11.PKCS11Error as exc:
            raise self.error(
                f"cannot load the PKCS#11 module {self.module}: {str(exc) or type(exc).__name__}; "
                "check owner_ksk.module (and SOFTHSM2_CONF for SoftHSM2)"
            ) from None

    def _load_with_env(self) -> Any:
        """The module, initialized with ``module_env`` in ``os.environ`` (see the module
        doc). Called under ``_SHARED_LOCK``."""
        loaded = getattr(pkcs11, "_loaded", {}).get(self.module)
        if loaded is None:  # first load in this process: the environment is ours to set
            os.environ.update(self.module_env)
            lib = pkcs11.lib(self.module)
            _LOADED_ENV[self.module] = (lib, dict(os.environ))
            return lib
        if not self.module_env:
            return pkcs11.lib(self.module)
        recorded = _LOADED_ENV.get(self.module)
        # Loaded by someone else than a store: the current environment is the best guess.
        ours = recorded is not None and recorded[0] is loaded
        seen: Mapping[str, str] = recorded[1] if recorded is not None and ours else os.environ
        differs = sorted(n for n, v in self.module_env.items() if seen.get(n) != v)
        # Someone changed os.environ since (and may have re-initialized the module then).
        stale = any(os.environ.get(n) != v for n, v in self.module_env.items())
        if not differs and not stale:
            return pkcs11.lib(self.module)
        real = os.path.realpath(self.module)
        if any(path == real for path, _ in _SHARED):  # a store has a session on it
            if not differs:  # initialized with our values and in use since: still so
                return pkcs11.lib(self.module)
            had = ", ".join(f"{n}={seen.get(n)!r}" for n in differs)
            want = ", ".join(f"{n}={self.module_env[n]!r}" for n in differs)
            raise self.error(
                f"the module is already loaded in this process with {had} and a store on it "
                f"is open; owner_ksk.module_env asks for {want}. A process holds one copy of "
                "a PKCS#11 module, configured once: give every owner_ksk using this module "
                "the same module_env (or close the other stores first)"
            )
        os.environ.update(self.module_env)
        lib = pkcs11.lib(self.module)
        lib.reinitialize()  # C_Finalize + C_Initialize: re-reads its configuration
        _LOADED_ENV[self.module] = (lib, dict(os.environ))
        return lib

    def _token(self, lib: Any) -> Any:
        try:
            return lib.get_token(token_label=self.token_label)
        except p11.NoSuchToken:
            labels = []
            with contextlib.suppress(p11.PKCS11Error):
                labels = sorted(t.label for t in lib.get_tokens() if t.label)
            raise self.error(
                f"no token labelled {self.token_label!r} in {self.module} (tokens there: "
                f"{', '.join(repr(x) for x in labels) or 'none'}); create it (SoftHSM2: "
                f"`softhsm2-util --init-token --free --label {self.token_label}`) or fix "
                "owner_ksk.token_label"
            ) from None
        except p11.MultipleTokensReturned:
            raise self.error(
                f"more than one token is labelled {self.token_label!r}; give each a unique label"
            ) from None
        except p11.PKCS11Error as exc:
            raise self.error(f"cannot list tokens: {type(exc).__name__} {exc}") from None

    def _open(self, token: Any, pin: str) -> None:
        flags = TokenFlag(token.flags)
        if flags & TokenFlag.USER_PIN_LOCKED:
            raise self.error(
                "the user PIN is locked after too many wrong PINs; the security officer must "
                "reset it (C_InitPIN, e.g. `softhsm2-util`/the vendor tool) before use"
            )
        if not flags & TokenFlag.USER_PIN_INITIALIZED:
            raise self.error("the token has no user PIN yet; the security officer must set one")
        key = (os.path.realpath(self.module), bytes(token.serial))
        with _SHARED_LOCK:
            shared = _SHARED.get(key)
            if shared is not None and not hmac.compare_digest(shared.pin_digest, _digest(pin)):
                # C_Login would answer "already logged in" whatever the PIN; compare instead.
                raise self._wrong_pin(token)
            if shared is None:
                try:
                    session = token.open(rw=True, user_pin=pin)
                except p11.PinIncorrect:
                    raise self._wrong_pin(token) from None
                except (p11.PinLocked, p11.PinExpired) as exc:
                    state = "locked" if isinstance(exc, p11.PinLocked) else "expired"
                    raise self.error(
                        f"the user PIN is {state}; the security officer must reset it "
                        "(C_InitPIN / C_SetPIN with the vendor tool) before use"
                    ) from None
                except (p11.PinInvalid, p11.PinLenRange):
                    raise self.error(
                        "the PIN is not a valid PIN for this token (characters or length); "
                        "check owner_ksk.pin"
                    ) from None
                except p11.UserAlreadyLoggedIn:
                    raise self.error(
                        "another part of this process is logged in to the token already; "
                        "open the token only through owner_ksk stores"
                    ) from None
                except p11.PKCS11Error as exc:
                    raise self.error(
                        f"cannot open a session: {type(exc).__name__} {exc}".rstrip()
                    ) from None
                shared = _SHARED[key] = _Shared(session=session, pin_digest=_digest(pin))
            shared.refs += 1
            self._shared, self._shared_key = shared, key

    def _wrong_pin(self, token: Any) -> Exception:
        hint = ""
        with contextlib.suppress(p11.PKCS11Error):
            flags = TokenFlag(token.flags)
            if flags & TokenFlag.USER_PIN_FINAL_TRY:
                hint = " — ONE more wrong PIN locks the token"
            elif flags & TokenFlag.USER_PIN_COUNT_LOW:
                hint = " (the token counts wrong PINs)"
        return self.error(f"wrong PIN (check owner_ksk.pin / the variable it names){hint}")

    @contextlib.contextmanager
    def _calling(self, action: str, key_id: str | None = None) -> Iterator[Any]:
        """The one place PKCS#11 errors become KeyStoreErrors."""
        shared = self._shared
        if shared is None:
            raise self.error(f"cannot {action}: the store is closed", key_id)
        with _SHARED_LOCK:  # see _SHARED_LOCK: the module is not thread-safe
            try:
                yield shared.session
            except (
                p11.SessionClosed,
                p11.SessionHandleInvalid,
                p11.DeviceRemoved,
                p11.TokenNotPresent,
            ) as exc:
                raise self.error(
                    f"cannot {action}: the token went away ({type(exc).__name__}); "
                    "reconnect it and restart",
                    key_id,
                ) from None
            except p11.UserNotLoggedIn:
                raise self.error(f"cannot {action}: the session was logged out", key_id) from None
            except p11.PKCS11Error as exc:
                raise self.error(
                    f"cannot {action}: {type(exc).__name__} {exc}".rstrip(), key_id
                ) from None
