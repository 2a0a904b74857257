"""The one seam between the Knot adapter and Knot: running ``keymgr`` and ``knotc``.

Every command goes through :meth:`KnotCommands.run`, the one place where an external
failure becomes a ``ProviderError``. Facts it relies on (Knot 3.2.6):

* knotc prints its errors on stdout (a failed connect on stderr); keymgr takes ``-1d`` for
  an option unless ``--`` ends the options.
* knotd serves its control socket one connection at a time, in its main thread, and a
  ``-b`` (blocking) command holds that thread until its zone event (a key load, a
  re-sign) is done. Connections arriving meanwhile wait in the socket's queue: the
  backlog is 5 and Linux admits one more, so 6 wait. knotc connects without blocking, so
  the next one fails at once with EAGAIN: ``failed to connect to socket '...' (OS lacked
  necessary resources)``. Nothing ran then. Knot 3.2 has no option to change this.
* Hence at most :data:`KNOTC_SLOTS` knotc per provider at a time. That is below the 6, and
  leaves room for other clients: an operator's knotc, another controller.
* A full queue (filled by others) is retried with exponential back-off and jitter for up
  to :data:`BUSY_RETRY_BUDGET` seconds, then reported as busy, not as down.
* keymgr does not use the socket. It opens the KASP database (LMDB, which serialises
  writers across processes itself; 96 concurrent keymgr, reads and writes mixed, all
  succeed), so keymgr calls are not bounded.

``command_prefix`` (e.g. ``["ssh", "dns1"]``) runs the tools elsewhere. ssh joins its
arguments with spaces and hands the result to the remote user's shell, so with a prefix
set every argument is shell-quoted (``shlex.quote``): a space or ``;`` in an argument then
reaches the tool as data, not as shell syntax. A *local* wrapper that execs ``"$@"`` sees
the quoted form of an argument only if it holds characters outside
``[A-Za-z0-9_@%+=:,./-]``; the adapter avoids such arguments (zone names are limited to
hostname characters, record data is passed word by word). Zone names are checked before
any command runs: one with other characters is refused.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import random
import re
import shlex
import signal
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Literal

from core import events
from core.config import KnotProviderConfig
from core.errors import ProviderError, ProviderUnreachable, ZoneMissing

LOGGER = logging.getLogger("multisigner.knot")

Tool = Literal["keymgr", "knotc"]

_TAIL_LINES = 6
_TAIL_CHARS = 600
# Letters, digits, '-' and '_' in labels that neither start nor end with '-', dot-separated,
# optionally absolute; or the root. Nothing a shell (local or behind ssh) would interpret.
_LABEL = r"[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?"
_ZONE_NAME = re.compile(rf"^(?:\.|{_LABEL}(?:\.{_LABEL})*\.?)$")

# knotc per provider at a time: knotd 3.2 queues 6 connections beyond the one it serves.
KNOTC_SLOTS = 4
# How long a knotc refused by a full control-socket queue is retried, in seconds (sleeps
# of 0.05 s doubling up to 2 s, each jittered to 50-100 % so that callers spread out).
BUSY_RETRY_BUDGET = 10.0
_BUSY_FIRST_DELAY = 0.05
_BUSY_MAX_DELAY = 2.0
_EAGAIN = "OS lacked necessary resources"  # Knot's text for EAGAIN (knot_strerror)


class ControlSocketBusy(ProviderUnreachable):
    """knotd's control-socket queue was full (EAGAIN): knotd runs but is busy, and
    nothing ran, so the command may be retried. ``detail``: what knotc said."""

    def __init__(self, message: str, *, detail: str, provider: str, zone: str | None,
                 endpoint: str | None) -> None:
        super().__init__(message, provider=provider, zone=zone, endpoint=endpoint)
        self.detail = detail


def check_zone_name(provider: str, zone: str) -> None:
    """Refuse a zone name with anything but hostname characters before it reaches a
    command line (behind an ssh prefix a remote shell parses it)."""
    if len(zone) > 254 or not _ZONE_NAME.match(zone):
        raise ProviderError(
            f"refusing zone name {zone!r} on a keymgr/knotc command line: only letters, "
            "digits, '-', '_' and '.' are accepted (labels of at most 63 characters, not "
            "starting or ending with '-'); check the zone's name in the configuration",
            provider=provider,
            zone=zone,
        )


def command_line(prefix: Sequence[str], argv: Sequence[str]) -> list[str]:
    """What is executed: ``argv`` alone, or after a prefix with every argument shell-quoted
    (ssh re-parses them in a remote shell)."""
    if not prefix:
        return list(argv)
    return [*prefix, *(shlex.quote(a) for a in argv)]


class KnotCommands:
    """Runs keymgr and knotc for one configured Knot provider."""

    def __init__(self, config: KnotProviderConfig) -> None:
        self.name = config.name
        self.conf = str(config.knot_config)
        self._prefix = list(config.command_prefix)
        self._timeout = config.timeout.total_seconds()
        self._children: set[asyncio.subprocess.Process] = set()
        # Instance attributes so that a test can lift the cap or shorten the retries.
        self.knotc_slots = KNOTC_SLOTS
        self.busy_retry_budget = BUSY_RETRY_BUDGET
        # A semaphore binds to the event loop it first waits in; the adapter may be used
        # from successive loops (one asyncio.run per CLI command or test step).
        self._slots: tuple[asyncio.AbstractEventLoop, asyncio.Semaphore] | None = None

    def error(self, message: str, *, zone: str | None = None,
              endpoint: str | None = None) -> ProviderError:
        """A ProviderError naming this provider."""
        return ProviderError(message, provider=self.name, zone=zone, endpoint=endpoint)

    async def run(
        self,
        tool: Tool,
        *args: str,
        zone: str | None = None,
        stdin: bytes | None = None,
        error_lines_fail: bool = False,
        options: Sequence[str] = (),
    ) -> str:
        """``_run_once``; a knotc waits for one of the provider's :attr:`knotc_slots` and is
        retried while knotd's control-socket queue is full (nothing was executed then, so
        trying again is safe). ``zone``: the zone the command is about (checked for
        hostname characters first; named in errors)."""
        if zone is not None:
            check_zone_name(self.name, zone)

        def once() -> Awaitable[str]:
            return events.timed(
                self.name, lambda: _operation(tool, args, zone, options),
                self._run_once(tool, *args, zone=zone, stdin=stdin,
                               error_lines_fail=error_lines_fail, options=options))

        if tool != "knotc":
            return await once()
        async with self._knotc_slot():
            return await self._retry_busy(once)

    def _knotc_slot(self) -> asyncio.Semaphore:
        """This event loop's semaphore of :attr:`knotc_slots`."""
        loop = asyncio.get_running_loop()
        if self._slots is None or self._slots[0] is not loop:
            self._slots = (loop, asyncio.Semaphore(self.knotc_slots))
        return self._slots[1]

    async def _retry_busy(self, once: Callable[[], Awaitable[str]]) -> str:
        """``once()``, again after a growing, jittered sleep while it raises
        ControlSocketBusy, for up to :attr:`busy_retry_budget` seconds. The slot stays
        taken meanwhile: more knotc from here would only meet the same full queue."""
        started = time.monotonic()
        delay, attempts = _BUSY_FIRST_DELAY, 0
        while True:
            attempts += 1
            try:
                return await once()
            except ControlSocketBusy as exc:
                pause = delay * random.uniform(0.5, 1.0)  # jitter: callers spread out
                waited = time.monotonic() - started
                if waited >= self.busy_retry_budget:
                    raise ControlSocketBusy(
                        f"knotd's control socket stayed busy for {waited:.1f} s ({attempts} "
                        f"attempts; knotc: {exc.detail}): knotd is running but serves one "
                        "control connection at a time and queues only a few; other knotc "
                        "clients or a long `-b` command hold it. Nothing ran; retry later",
                        detail=exc.detail, provider=self.name, zone=exc.zone,
                        endpoint=exc.endpoint,
                    ) from None
                LOGGER.debug("%s: knotd's control socket is busy; retry in %.2f s",
                             self.name, pause, extra={"provider": self.name, "zone": exc.zone})
                await asyncio.sleep(min(pause, self.busy_retry_budget - waited))
                delay = min(delay * 2, _BUSY_MAX_DELAY)

    async def _run_once(
        self,
        tool: Tool,
        *args: str,
        zone: str | None,
        stdin: bytes | None,
        error_lines_fail: bool,
        options: Sequence[str],
    ) -> str:
        """Run ``command_prefix + [tool, -c, CONF, *options, --, *args]``; its stdout
        (``--``: a relative time like ``-1d`` is an argument, not an option). A timeout is
        ``ProviderUnreachable`` (the process group is killed), a non-zero exit (or, with
        ``error_lines_fail``, an ``error:`` line on stderr) ``ProviderError`` with the
        command and the tail of its output."""
        extra = ["-t", str(max(1, math.ceil(self._timeout)))] if tool == "knotc" else []
        argv = command_line(self._prefix, [tool, "-c", self.conf, *extra, *options, "--", *args])
        command = shlex.join([tool, *options, *args])  # for messages (prefix left out)
        started = time.monotonic()
        try:
            process = await asyncio.create_subprocess_exec(
                *argv,
                stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                start_new_session=True,  # its own group: a timeout kills what it started too
            )
        except OSError as exc:
            raise self.error(
                f"cannot run {argv[0]!r} ({exc.strerror or exc}); check command_prefix and "
                "that Knot's tools (keymgr, knotc) are installed and on PATH",
                zone=zone, endpoint=command,
            ) from None
        self._children.add(process)
        try:
            out, err = await asyncio.wait_for(process.communicate(stdin), self._timeout)
        except TimeoutError:
            await kill(process)
            raise ProviderUnreachable(
                f"no answer within {self._timeout:g} s (killed); check that the host and "
                f"Knot's KASP database at {self.conf} are reachable and not locked",
                provider=self.name, zone=zone, endpoint=command,
            ) from None
        except BaseException:
            await kill(process)  # cancelled: leave no child behind
            raise
        finally:
            self._children.discard(process)
        LOGGER.debug("%s: %s -> exit %s in %.0f ms", self.name, command, process.returncode,
                     (time.monotonic() - started) * 1000,
                     extra={"provider": self.name, "zone": zone})
        stdout = out.decode(errors="replace")
        stderr = err.decode(errors="replace")
        output = stderr + "\n" + stdout  # knotc prints its errors on stdout
        errors = [ln for ln in output.splitlines() if ln.startswith("error:")]
        if process.returncode == 0 and not (error_lines_fail and errors):
            return stdout
        raise self._failure(tool, process.returncode, stdout, stderr, zone, command)

    def _failure(self, tool: Tool, code: int | None, stdout: str, stderr: str,
                 zone: str | None, command: str) -> ProviderError:
        """The error a failed command becomes."""
        output = stderr + "\n" + stdout
        tail = _tail(stderr) or _tail(stdout) or "(no output)"
        if tool == "knotc" and "no such zone" in output:
            return ZoneMissing(
                f"Knot does not serve the zone ({tail}); add it to {self.conf} and "
                "`knotc reload`, or remove the provider from the zone's signers",
                provider=self.name, zone=zone, endpoint=command,
            )
        if tool == "knotc" and "failed to connect" in output:
            if _EAGAIN in output:  # the queue is full: busy, not down
                return ControlSocketBusy(f"knotd's control socket is busy ({tail})",
                                         detail=tail, provider=self.name, zone=zone,
                                         endpoint=command)
            return ProviderUnreachable(  # "not exists", "connection refused": no knotd
                f"knotd's control socket does not accept connections ({tail}); is knotd "
                f"running, listening on the control socket that {self.conf} names?",
                provider=self.name, zone=zone, endpoint=command,
            )
        return self.error(f"failed (exit {code}): {tail}", zone=zone, endpoint=command)

    async def aclose(self) -> None:
        """Kill any command still running (a cancelled caller's)."""
        for process in list(self._children):
            await kill(process)


def _operation(tool: Tool, args: Sequence[str], zone: str | None,
               options: Sequence[str]) -> str:
    """A command's kind for ``ProviderCall`` events: the tool and its verb (``keymgr
    list``, ``knotc zone-status``), without the zone, key ids and files."""
    verb = next((a for a in args if a != zone), " ".join(options))
    return f"{tool} {verb}".strip()


def _tail(text: str) -> str:
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    tail = " | ".join(lines[-_TAIL_LINES:])
    return tail[-_TAIL_CHARS:]


async def kill(process: asyncio.subprocess.Process) -> None:
    """Kill the process group we started (its session) and reap it."""
    if process.returncode is None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)
    with contextlib.suppress(ProcessLookupError):
        await process.wait()
