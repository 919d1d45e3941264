"""A saga's long-lived thread keeps what resume and rollback need: its newest checkpoints only."""

from __future__ import annotations

import sys
from pathlib import Path

from graph_flows import flow_from_bus
from migration_kit import Migration
from migration_kit.live.pruning import PRUNE_EVERY, ThreadPruner

sys.path.insert(0, str(Path(__file__).parent))
import saga_app  # noqa: E402
from legacy_bus import Event, EventBus  # noqa: E402


def counter_bus() -> EventBus:
    bus = EventBus("counter")

    @bus.on("Add")
    def add(e, ctx):
        ctx.state["n"] = ctx.state.get("n", 0) + e.payload["k"]
        ctx.state.setdefault("seen", []).append(e.payload["k"])
        ctx.publish("Added", {"n": ctx.state["n"]})

    @bus.on("Added")
    def noted(e, ctx):
        ctx.state["last"] = e.payload["n"]

    return bus


def adds(start: int, stop: int) -> list[Event]:
    return [Event(type="Add", payload={"k": k}, correlation_id="acct-1", id=f"add-{k}") for k in range(start, stop)]


def checkpoints(m: Migration, saga: str) -> int:
    return sum(1 for _ in m.store.checkpointer.list({"configurable": {"thread_id": f"{m.name}:saga:{saga}"}}))


def test_in_primary_a_saga_thread_is_pruned_to_its_newest_checkpoint_and_rollback_hands_back_the_whole_state(redis_url):
    pure = counter_bus()
    for e in adds(0, 5 * PRUNE_EVERY + 3):
        pure.dispatch(e)
    bus = counter_bus()
    m = Migration("pruned", legacy=bus, candidate=flow_from_bus(bus), store=redis_url)
    m.promote(to="primary")
    with m.attach() as handle:
        for e in adds(0, 4 * PRUNE_EVERY):
            bus.dispatch(e)
        # every PRUNE_EVERY events the thread is cut back to its newest checkpoint
        assert checkpoints(m, "acct-1") == 1
        for e in adds(4 * PRUNE_EVERY, 5 * PRUNE_EVERY - 1):
            bus.dispatch(e)
        grown = checkpoints(m, "acct-1")
        assert 1 < grown <= PRUNE_EVERY * 6  # at most one prune interval of checkpoints, never the saga's age
        assert handle.cutover.pruner.pruned == 4 and handle.cutover.pruner.failed == 0
        m.rollback("test: hand the saga back after pruning")
        for e in adds(5 * PRUNE_EVERY - 1, 5 * PRUNE_EVERY + 3):
            bus.dispatch(e)
        handle.flush(10)
    assert bus.state_for("acct-1") == pure.state_for("acct-1")
    assert bus.state_for("acct-1")["seen"] == list(range(5 * PRUNE_EVERY + 3))
    m.close()


def test_the_saga_shop_still_ends_as_pure_legacy_through_primary_and_rollback_with_pruning(redis_url):
    events = saga_app.events(40)
    pure = saga_app.build()
    for e in events:
        pure.bus.dispatch(e.model_copy(deep=True))
    shop = saga_app.build()
    m = Migration("saga-pruned", legacy=shop.bus, candidate=flow_from_bus(shop.bus), store=redis_url)
    m.promote(to="primary")
    with m.attach():
        for e in events[:100]:
            shop.bus.dispatch(e.model_copy(deep=True))
        m.rollback("test")
        for e in events[100:]:
            shop.bus.dispatch(e.model_copy(deep=True))
        m.settle()  # sagas that saw no event since the rollback are handed back too
    orders = sorted({e.correlation_id for e in events})
    assert {o: shop.bus.state_for(o) for o in orders} == {o: pure.bus.state_for(o) for o in orders}
    assert not shop.violations
    m.close()


def test_a_checkpointer_without_prune_is_left_alone_once_noticed():
    from langgraph.checkpoint.memory import InMemorySaver

    pruner = ThreadPruner(every=1)
    pruner.after(InMemorySaver(), {"configurable": {"thread_id": "t"}})
    assert pruner.unsupported and not pruner.due("t") and pruner.failed == 0


def test_the_event_counts_it_remembers_are_capped():
    pruner = ThreadPruner(every=3, tracked=2)
    assert [pruner.due("a"), pruner.due("a"), pruner.due("a")] == [False, False, True]
    pruner.due("b")
    pruner.due("c")  # "a" is forgotten: its count starts again
    assert len(pruner._counts) == 2 and [pruner.due("a"), pruner.due("a"), pruner.due("a")] == [False, False, True]
