"""Apply one change at several providers concurrently, and report partial failure once.

Every change a step fans out only adds to (or safely trims) what is served, so the order
does not matter and a provider that failed can be brought along by the next attempt:
the others are not rolled back, the failure names each provider's error."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Sequence
from typing import Any

from core.errors import MultisignerError, Refused


async def at_every_provider(calls: Sequence[Awaitable[Any]], *, failed: str) -> None:
    """Await every call; if any failed with a product error, raise one ``Refused`` whose
    message is ``failed`` formatted with ``{failed}`` and ``{total}``. Anything else (a
    bug, a cancellation) propagates as it is."""
    results = await asyncio.gather(*calls, return_exceptions=True)
    failures = [r for r in results if isinstance(r, BaseException)]
    for failure in failures:
        if not isinstance(failure, MultisignerError):
            raise failure
    if failures:
        raise Refused(failed.format(failed=len(failures), total=len(results)),
                      [str(f) for f in failures])
