"""The machinery-failure hook: every failure the migration swallows goes through ``Faults.raised``.

github/scientist routes every exception its own machinery meets (a
comparator, a cleaner, a publisher) through one ``raised(operation, error)``
method. migration-kit does the same, except that swallowing is the default:
the legacy path must never see an exception from the migration machinery.
``Faults.raised(operation, exc)``

* counts it per operation (bounded: at most ``MAX_OPERATIONS`` names, the
  rest under ``"other"``), for status: ``faults.counts()``;
* adds it to OpenTelemetry through the migration's ``Telemetry`` when one is
  given (``Telemetry.fault``: counter ``migration.faults``, attributes
  ``operation`` and ``exception.type``, and a ``migration.fault`` event on
  the active span when it is recording);
* logs it on ``logging.getLogger("migration_kit")``, rate-limited: the first
  occurrence of each operation (with its traceback) and then every
  ``log_every``-th, the message masked by the migration's redactor;
* then calls the user's ``handler(operation, exc)`` if one was given (or a
  subclass's ``raised`` override, as in scientist).

It never raises: a failure inside it (a handler's bug, a broken exporter) is
counted under ``"faults.handler"`` and dropped. A component gets its
``Faults`` handed to it (a constructor argument, default ``Faults()``); it is
never looked up globally.

Every broad ``except Exception`` / ``except BaseException`` in
``migration_kit`` is one of these kinds (write the kind in the comment next to
the clause):

1. **swallowed** - a failure of the machinery (a store read, a send, an
   encode, a gauge callback, pruning) or of best-effort cleanup (closing a
   client, flushing a stream) that must not reach the caller: it goes through
   ``Faults.raised`` and the component carries on (with a fallback value).
2. **re-raised** - cleanup on the way out (release a lock, close a store,
   leave a waiters' queue) followed by a bare ``raise``: nothing is swallowed.
3. **translated** - turned into a typed ``MigrationKitError`` (``AppNotFound``,
   ``AssertionError`` in the testing kit) or, at the CLI's top, into one
   escaped line on stderr and exit status 2: the failure is reported to the
   caller, not swallowed.
4. **evidence** - a handler's or the candidate's own exception (or a bug in
   a comparator rule) becomes part of the result: an ``Outcome.crash``, a
   ``comparator_failed`` difference, an ``error`` field in a status. It is
   what is being measured, so it is reported there and not counted here.
5. **classified** - the exception is inspected and re-raised unless it is a
   known, expected condition (``BUSYGROUP``, "no such key", a missing group),
   which is handled on purpose.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

from migration_kit.observe.redaction import Redactor, default_redactor

__all__ = ["LOGGER", "MAX_OPERATIONS", "FaultHandler", "FaultSink", "Faults"]

LOGGER = "migration_kit"
MAX_OPERATIONS = 64  # distinct operation names counted; more fold into OTHER (operation names are code, not data)
OTHER = "other"
HANDLER = "faults.handler"  # a failure inside the hook itself

FaultHandler = Callable[[str, BaseException], object]


@runtime_checkable
class FaultSink(Protocol):
    """Where a fault is traced and counted (``migration_kit.observe.telemetry.Telemetry`` is one)."""

    def fault(self, operation: str, exc: BaseException) -> None:
        """Record one swallowed failure of ``operation``."""


class Faults:
    """Counts, traces and logs each machinery failure that is swallowed (one ``raised`` hook).

    Args:
        handler: called as ``handler(operation, exc)`` after counting; its own
            exceptions are counted under ``"faults.handler"``, never raised.
        telemetry: the migration's ``Telemetry``; records ``migration.faults``
            and a span event (nothing when None).
        redactor: masks the logged message (exception texts may quote event
            data); default: card numbers only.
        log_every: after an operation's first failure, log every N-th one.
        logger: default ``logging.getLogger("migration_kit")``.
    """

    def __init__(
        self,
        handler: FaultHandler | None = None,
        *,
        telemetry: FaultSink | None = None,
        redactor: Redactor | None = None,
        log_every: int = 100,
        logger: logging.Logger | None = None,
    ) -> None:
        self.handler = handler
        self.telemetry = telemetry
        self.redactor = redactor
        self.log_every = max(1, int(log_every))
        self.logger = logger or logging.getLogger(LOGGER)
        self.last: dict[str, str] = {}  # operation -> "Type: message" of its last failure (masked), bounded like the counts
        self._counts: dict[str, int] = {}
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"Faults({self.counts()!r})"

    def raised(self, operation: str, exc: BaseException) -> None:
        """Record one swallowed failure of ``operation``; never raises."""
        try:
            n, op = self._count(operation)
            if self.telemetry is not None:
                self.telemetry.fault(op, exc)
            if n == 1 or n % self.log_every == 0:
                self._log(op, exc, n)
            if self.handler is not None:
                self.handler(op, exc)
        except Exception:  # noqa: BLE001 - the hook itself must never raise into the path it protects
            try:
                self._count(HANDLER)
            except Exception:  # noqa: BLE001, S110 - nothing is left to report it with
                pass

    def counts(self) -> dict[str, int]:
        """Failures swallowed so far, per operation (a copy)."""
        with self._lock:
            return dict(self._counts)

    @property
    def total(self) -> int:
        """All failures swallowed so far."""
        with self._lock:
            return sum(self._counts.values())

    def _count(self, operation: str) -> tuple[int, str]:
        op = operation if isinstance(operation, str) and operation else OTHER
        with self._lock:
            if op not in self._counts and len(self._counts) >= MAX_OPERATIONS:
                op = OTHER
            n = self._counts.get(op, 0) + 1
            self._counts[op] = n
        return n, op

    def _log(self, operation: str, exc: BaseException, n: int) -> None:
        red = self.redactor or default_redactor()
        text = red.text(f"{type(exc).__name__}: {exc}")
        with self._lock:
            self.last[operation] = text
        if n == 1:
            # The traceback is logged once per operation: it is what finds the bug; later ones only count.
            self.logger.warning("migration_kit: %s failed (swallowed): %s", operation, text, exc_info=_masked_exc_info(exc, text))
        else:
            self.logger.warning("migration_kit: %s failed (%d times so far, swallowed): %s", operation, n, text)


def _masked_exc_info(exc: BaseException, text: str) -> tuple[type[BaseException], BaseException, Any] | None:
    # The traceback shows frames and lines, never the exception's message (masked in ``text``).
    tb = exc.__traceback__
    return (_Masked, _Masked(text), tb) if tb is not None else None


class _Masked(Exception):
    """Stands in for the original exception in a logged traceback, with its message masked."""


