"""The three paths an example app's own tests run on, and a live shadow round, shared by the example suites."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from graph_flows import flow_from_bus
from migration_kit import Migration

PATHS = ("bus", "graph")


@contextmanager
def served_by(path: str, bus, redis_url: Callable[[], str]) -> Iterator[None]:
    """``bus``: the app's bus serves, as it always did; ``graph``: the derived graph serves every call (primary)."""
    if path == "bus":
        yield
        return
    m = Migration(f"serve-{bus.name}", legacy=bus, candidate=flow_from_bus(bus), store="memory://")
    handle = m.attach(redis_url())
    m.promote(to="primary")
    try:
        yield
        assert handle.stats()["served"]["candidate"] > 0, "the graph served nothing: the test did not go through it"
    finally:
        handle.close()


def live_shadow(m: Migration, redis_url: str, traffic: Callable[[], int]) -> dict:
    """Attach in shadow, run the app's live ``traffic`` (returns how many root publishes), drain with a worker."""
    with m.attach(redis_url) as handle:
        n = traffic()
        handle.flush()
    m.worker(max_events=n, block_ms=100, evidence_every=0.0).run()
    return m.shadow_status()


def twin_migration(build: Callable[[], object], *, store: str = "memory://", change: Callable[[object, object], None] | None = None):
    """(the live app, a Migration of its bus onto the graph of a twin instance of the same app).

    In-memory apps keep their state in Python objects; the candidate runs on a
    twin built the same way, so each side keeps its own state, as two
    deployments would. ``change(flow, twin)`` edits the candidate's flow.
    """
    live, twin = build(), build()
    flow = flow_from_bus(twin.bus)
    if change is not None:
        change(flow, twin)
    return live, Migration(f"example-{live.bus.name}", legacy=live.bus, candidate=flow, store=store)
