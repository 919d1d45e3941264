"""Effect ports: the side effects legacy handlers cause, made safe to run twice.

A handler calls a port (``charge_card(order_id, amount)``) exactly as it
always did. Who is calling decides what happens:

* a live, authoritative dispatch (no sandbox active) runs the real function;
* inside a sandbox (everything the migration runs itself: replay, compare,
  a shadow path) nothing real happens: the call is recorded and answered with
  the response of the matching authoritative call (same port and arguments,
  in order) when the sandbox was given one, else with the port's stub.

Either way, when the call happens inside a handler its ``EffectCall`` is
recorded on that handler's step, so both paths' effects can be compared.
"""

from __future__ import annotations

import copy
import functools
import inspect
import sys
from collections import defaultdict, deque
from collections.abc import Callable, Iterable
from contextvars import ContextVar
from typing import Any, Protocol

from legacy_bus.codec import decode, encode
from legacy_bus.context import ACTIVE, HandlerContext
from migration_errors import RecordedEffectError  # re-exported: it lived here
from legacy_bus.records import EffectCall, ErrorInfo, call_key

__all__ = [
    "SANDBOX",
    "DeclaredDatabases",
    "EffectPort",
    "RecordedEffectError",
    "Sandbox",
    "current_handler",
    "current_sandbox",
    "in_handler",
    "register_database",
    "sandboxed",
]

#: The sandbox governing effect calls in this context (None: calls are real).
SANDBOX: ContextVar[Sandbox | None] = ContextVar("legacy_bus_sandbox", default=None)


class DeclaredDatabases(Protocol):
    """What a sandbox needs from the declared-database support (``legacy_bus.database`` plugs itself in)."""

    def sandbox_writes(self, sandbox: Sandbox) -> tuple[Any, ...]:
        """The rows a sandbox's runs wrote through declared databases."""
        ...

    def install_guard(self) -> None:
        """Watch every SQLAlchemy engine's writes (idempotent, cheap once installed)."""
        ...


class Sandbox:
    """Makes every effect call in its context unreal: recorded, answered, never run.

    Args:
        answers: authoritative calls of the same root event (for instance
            recorded from live traffic). A sandboxed call takes the response
            of the first unused answer with the same port and arguments.
    """

    __slots__ = ("_answers", "_token", "calls", "otherwise", "state")

    def __init__(self, answers: Iterable[EffectCall] = (), *, otherwise: str = "stub") -> None:
        if otherwise not in ("stub", "real"):
            raise ValueError(f"Sandbox(otherwise=...) is 'stub' or 'real', not {otherwise!r}")
        #: what a call without a matching answer gets: the port's stub, or (``real``)
        #: the real function: finishing work another run began, whose calls are answered.
        self.otherwise = otherwise
        self._answers: dict[str, deque[EffectCall]] = defaultdict(deque)
        for call in answers:
            self._answers[call.key].append(call)
        self.calls: list[EffectCall] = []
        #: declared databases' connections and writes (``legacy_bus.database``), made on first use
        self.state: Any = None

    @property
    def writes(self) -> tuple[Any, ...]:
        """The rows this sandbox's runs wrote through declared databases (``legacy_bus.database.RowWrite``)."""
        return _DATABASE[0].sandbox_writes(self) if _DATABASE else ()

    def take(self, key: str) -> EffectCall | None:
        """Pop the next unused authoritative call with this identity, if any."""
        queue = self._answers.get(key)
        return queue.popleft() if queue else None

    def __enter__(self) -> Sandbox:
        self._token = SANDBOX.set(self)
        if _DATABASE and "sqlalchemy" in sys.modules:
            # Every SQLAlchemy engine's writes are watched from the first sandbox on, declared or not.
            _DATABASE[0].install_guard()
        return self

    def __exit__(self, *exc: object) -> None:
        SANDBOX.reset(self._token)
        if self.state is not None:
            self.state.close()  # roll back what declared databases were given: nothing sandboxed is committed


def current_sandbox() -> Sandbox | None:
    """The sandbox active in this context, or None when effect calls are real."""
    return SANDBOX.get()


def in_handler() -> bool:
    """True while a handler runs in this context (its publishes join the running cascade)."""
    return ACTIVE.get() is not None


def current_handler() -> str | None:
    """The node name of the handler running in this context, if any (to attribute its logging)."""
    active = ACTIVE.get()
    return None if active is None else active.node


def sandboxed(answers: Iterable[EffectCall] = ()) -> Sandbox:
    """A context manager under which effect calls are recorded and answered, never real."""
    return Sandbox(answers)


def _exact(value: Any) -> Any:
    """An effect argument or response as recorded: exactly encoded (dataclasses, dates...), else as it is."""
    try:
        return encode(value)
    except TypeError:  # not encodable exactly (a session, a socket): kept as the object, as before
        return value


def _stub_answer(stub: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    if callable(stub):
        return stub(*args, **kwargs)
    return copy.deepcopy(stub)


class EffectPort:
    """A side-effect function wrapped so that only authoritative dispatches run it.

    Calling the port calls the function with the same arguments and returns
    (or raises) what it does when the call is real. Created by
    ``EventBus.effect``; the original function is ``port.__wrapped__``.
    """

    def __init__(self, name: str, fn: Callable[..., Any], stub: Any = None) -> None:
        self.name = name
        self.stub = stub
        self.__wrapped__ = fn
        self.is_async = inspect.iscoroutinefunction(fn)
        functools.update_wrapper(self, fn)

    def __repr__(self) -> str:
        return f"<EffectPort {self.name!r}>"

    def __get__(self, obj: Any, objtype: Any = None) -> Any:
        # Ports defined as methods bind like functions do.
        return self if obj is None else functools.partial(self, obj)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if self.is_async:
            return self._acall(args, kwargs)
        sandbox, call, answer = self._plan(args, kwargs)
        if answer is _REAL:
            return self._real(args, kwargs)
        if answer is _STUB:
            with _OnError(self._record, sandbox, call):
                answer = _stub_answer(self.stub, args, kwargs)
        return self._answered(sandbox, call, answer)

    async def _acall(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        sandbox, call, answer = self._plan(args, kwargs)
        if answer is _REAL:
            return await self._acall_real(args, kwargs)
        if answer is _STUB:
            with _OnError(self._record, sandbox, call):
                answer = _stub_answer(self.stub, args, kwargs)
                if inspect.isawaitable(answer):
                    answer = await answer
        return self._answered(sandbox, call, answer)

    def _plan(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, Any, Any]:
        """What a call does, I/O-free: (sandbox, call, ``_REAL`` / ``_STUB`` / the answer); a recorded error is raised."""
        sandbox = SANDBOX.get()
        if sandbox is None:
            return None, None, _REAL
        call, answer = self._sandboxed(sandbox, args, kwargs)
        if isinstance(answer, _Raise):
            raise answer.exc
        if answer is not _REAL and call.mode == "stub" and callable(self.stub):
            answer = _STUB
        return sandbox, call, answer

    def _answered(self, sandbox: Sandbox, call: EffectCall, answer: Any) -> Any:
        self._record(sandbox, call, response=answer)
        return answer

    async def _acall_real(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        active = ACTIVE.get()
        with _OnError(self._record_real, active, args, kwargs, None):
            response = await self.__wrapped__(*args, **kwargs)
        self._record_real(active, args, kwargs, response, None)
        return response

    def _real(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        active = ACTIVE.get()
        with _OnError(self._record_real, active, args, kwargs, None):
            response = self.__wrapped__(*args, **kwargs)
        self._record_real(active, args, kwargs, response, None)
        return response

    def _record_real(
        self, active: HandlerContext | None, args: tuple[Any, ...], kwargs: dict[str, Any], response: Any, error: ErrorInfo | None
    ) -> None:
        if active is not None:
            active.effects.append(
                EffectCall(self.name, _exact(list(args)), _exact(dict(kwargs)), _exact(response), error, "real", active.node)
            )

    def _sandboxed(self, sandbox: Sandbox, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[EffectCall, Any]:
        """Find the answer for a sandboxed call; the call's record is completed by ``_record``."""
        # Recorded, streamed and compared in their exact encoding, so every path sees the same values.
        largs, dkwargs = _exact(list(args)), _exact(dict(kwargs))
        # No answers at all (a replay of a log without recorded effects): no identity to look up.
        recorded = sandbox.take(call_key(self.name, largs, dkwargs)) if sandbox._answers else None
        if recorded is not None:
            call = EffectCall(self.name, largs, dkwargs, recorded.response, recorded.error, "recorded")
            if recorded.error is not None:
                self._record(sandbox, call, error=recorded.error)
                return call, _Raise(RecordedEffectError(recorded.error))
            return call, decode(copy.deepcopy(recorded.response))
        if sandbox.otherwise == "real":
            return EffectCall(self.name, largs, dkwargs), _REAL
        call = EffectCall(self.name, largs, dkwargs, None, None, "stub")
        return call, None if callable(self.stub) else _stub_answer(self.stub, args, kwargs)

    def _record(self, sandbox: Sandbox, call: EffectCall, *, response: Any = None, error: ErrorInfo | None = None) -> None:
        active = ACTIVE.get()
        done = EffectCall(
            call.port, call.args, call.kwargs, _exact(response), error, call.mode, None if active is None else active.node
        )
        sandbox.calls.append(done)
        if active is not None:
            active.effects.append(done)


# legacy_bus.database, which registers itself when imported (legacy_bus/__init__ always imports
# it): the sandbox reaches declared databases through it without importing the module above it.
_DATABASE: list[DeclaredDatabases] = []


def register_database(module: DeclaredDatabases) -> None:
    """Plug in the declared-database support (``sandbox_writes``, ``install_guard``); called by ``legacy_bus.database``."""
    _DATABASE[:] = [module]
_REAL = object()  # no answer, and the sandbox lets such calls run for real
_STUB = object()  # no answer: the port's callable stub gives it


class _OnError:
    """Around one call: an ``Exception`` it raises is recorded (``record(*args, error=...)``) and goes on."""

    __slots__ = ("args", "record")

    def __init__(self, record: Callable[..., None], *args: Any) -> None:
        self.record = record
        self.args = args

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: Any) -> bool:
        if exc is not None and isinstance(exc, Exception):
            self.record(*self.args, error=ErrorInfo.of(exc))
        return False  # never swallowed: the caller sees the function's own exception


class _Raise:
    __slots__ = ("exc",)

    def __init__(self, exc: BaseException) -> None:
        self.exc = exc
