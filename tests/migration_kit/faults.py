"""Shared parts of the fault-injection suite: a live app that counts every handler run, and its checks.

Every publish is recorded with what reached its caller: ``ok``, ``boom`` (the
handler's own exception) or ``unavailable`` (``StoreUnavailable``, the
documented failure once the candidate is on the serving path). ``check``
asserts the suite's laws: each publish ran its handler exactly once (on
whichever side served it), or failed as documented and ran nowhere; no saga
lock stays held; every tapped entry was sent or shed, and counted.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter
from typing import Any

import redis.connection

from graph_flows import flow_from_bus
from legacy_bus import Event, EventBus
from migration_errors import HandlerError, StoreUnavailable
from migration_kit import Migration

SERVING = ("canary", "primary", "retired")  # phases where the candidate's store is on the serving path
PHASES = ("shadow", "canary", "primary", "retired", "rolled_back")


class Boom(RuntimeError):
    """The handler's own exception."""


def set_phase(m: Migration, phase: str) -> None:
    """Move a fresh migration to ``phase``."""
    if phase == "canary":
        m.promote(to="canary", percent=50)
    elif phase in ("primary", "retired"):
        m.promote(to=phase)
    elif phase == "rolled_back":
        m.rollback("test: rolled back")


class NetworkSpy:
    """Records which threads send to Redis (the real client's own send path, wrapped, not replaced)."""

    def __init__(self) -> None:
        self.threads: set[int] = set()
        self._original = redis.connection.AbstractConnection.send_packed_command

    def __enter__(self) -> NetworkSpy:
        spy, original = self, self._original

        def send(conn: Any, command: Any, check_health: bool = True) -> None:
            spy.threads.add(threading.get_ident())
            return original(conn, command, check_health)

        redis.connection.AbstractConnection.send_packed_command = send  # type: ignore[method-assign]
        return self

    def __exit__(self, *exc: object) -> None:
        redis.connection.AbstractConnection.send_packed_command = self._original  # type: ignore[method-assign]


class Live:
    """A live bus with a migration attached in ``phase``; publishes alternate sync and async."""

    def __init__(self, name: str, store: str, tap: str, phase: str, *, attach: bool = True, awaits: bool = False) -> None:
        self.phase = phase
        self.bus = EventBus(name)
        self.runs: Counter[str] = Counter()
        self.outcomes: dict[str, str] = {}
        runs = self.runs

        if awaits:

            @self.bus.on("Order")
            async def take_async(e: Event, ctx: Any) -> None:  # awaits: a cancellation can land inside it
                runs[e.id] += 1
                await asyncio.sleep(0)
                ctx.state["n"] = ctx.state.get("n", 0) + 1
                await asyncio.sleep(0)
                if e.payload["boom"]:
                    raise Boom(e.id)
        else:

            @self.bus.on("Order")
            def take(e: Event, ctx: Any) -> None:
                runs[e.id] += 1
                ctx.state["n"] = ctx.state.get("n", 0) + 1
                if e.payload["boom"]:
                    raise Boom(e.id)

        self.m = Migration(name, legacy=self.bus, candidate=flow_from_bus(self.bus), store=store)
        self.m.phase_ttl = 0.5  # a tighter staleness bound keeps the suite quick
        self.tap = tap
        self.loop = asyncio.new_event_loop()
        self.handle: Any = None
        self.n = 0
        if attach:
            self.attach()

    def attach(self) -> None:
        self.handle = self.m.attach(self.tap, timeout=0.25)

    def event(self) -> Event:
        """The next event: sagas ``saga-0..4`` in turn, every 7th one's handler raising ``Boom``."""
        i = self.n
        self.n += 1
        return Event(type="Order", payload={"i": i, "boom": i % 7 == 3}, correlation_id=f"saga-{i % 5}")

    def publish(self, count: int = 1) -> None:
        """Publish ``count`` events (even: ``dispatch``, odd: ``adispatch``), recording what reached the caller."""
        for _ in range(count):
            e = self.event()
            try:
                if e.payload["i"] % 2:
                    self.loop.run_until_complete(self.bus.adispatch(e))
                else:
                    self.bus.dispatch(e)
                out = "ok"
            except Boom:
                out = "boom"
            except HandlerError as exc:  # the candidate served: the handler's error, as its Dispatch reports it
                assert "Boom" in str(exc), exc
                out = "boom"
            except StoreUnavailable as exc:
                if "was cut off" in str(exc):  # mid-run on the candidate: resumed by the saga's next event
                    out = "cut off"
                else:
                    assert "was not run on either side" in str(exc), exc
                    out = "unavailable"
            self.outcomes[e.id] = out  # anything else propagates and fails the test

    def publish_until(self, done: Any, *, at_least: int = 1, limit: float = 15.0) -> None:
        """Publish while a fault lasts (until ``done()``), at least ``at_least`` events."""
        deadline = time.monotonic() + limit
        sent = 0
        while (sent < at_least or not done()) and time.monotonic() < deadline:
            self.publish()
            sent += 1

    def wait_fresh(self, since: float, limit: float = 15.0) -> None:
        """Wait until the routing view has read the store after ``since`` (the store answers again)."""
        view = self.handle.cutover.view
        deadline = time.monotonic() + limit
        while view.seen.at <= since or view.seen.state is None:
            assert time.monotonic() < deadline, f"the phase view did not refresh: {view.last_error}"
            time.sleep(0.01)

    def check(self, *, may_fail: bool | None = None) -> dict[str, int]:
        """The suite's laws (see the module docstring); returns the outcome counts."""
        may_fail = self.phase in SERVING if may_fail is None else may_fail
        for eid, out in self.outcomes.items():
            if out == "cut off":
                assert may_fail and self.runs[eid] <= 2, f"{self.phase}: cut-off event {eid} ran {self.runs[eid]}x"
            elif out == "unavailable":
                assert may_fail, f"{self.phase}: event {eid} failed with StoreUnavailable"
                assert self.runs[eid] == 0, f"{self.phase}: failed event {eid} ran {self.runs[eid]}x"
            else:
                assert self.runs[eid] == 1, f"{self.phase}: event {eid} ({out}) ran {self.runs[eid]}x"
        cutover = self.handle.cutover
        assert cutover.ledger.locks.held() == []
        self.handle.close(timeout=1.0)
        h = self.handle
        assert h.tapped == h.sent + h.shed, h.stats()
        self.loop.close()
        self.m.close()
        return dict(Counter(self.outcomes.values()))
