"""Issue 8: routing by phase, sagas handed over on promotion and rollback, mid-flight."""

from __future__ import annotations

import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from graph_flows import flow_from_bus
from migration_kit import Migration

sys.path.insert(0, str(Path(__file__).parent))
import saga_app  # noqa: E402


def run_pure(events):
    shop = saga_app.build()
    for e in events:
        shop.bus.dispatch(e.model_copy(deep=True))
    return shop


def final_states(bus, orders):
    return {o: bus.state_for(o) for o in orders}


def test_promote_to_primary_then_roll_back_mid_flight_ends_exactly_as_pure_legacy(redis_url):
    events = saga_app.events(300)  # 900 events, orders interleaved: many sagas in flight at each switch
    orders = sorted({e.correlation_id for e in events})
    pure = run_pure(events)
    assert not pure.violations

    shop = saga_app.build()
    m = Migration("saga-cutover", legacy=shop.bus, candidate=flow_from_bus(shop.bus), store="memory://")
    handle = m.attach(redis_url)
    try:
        a, b = len(events) // 3, 2 * len(events) // 3
        for e in events[:a]:
            shop.bus.dispatch(e.model_copy(deep=True))
        m.promote(to="primary")
        for e in events[a:b]:
            shop.bus.dispatch(e.model_copy(deep=True))
        served_mid = dict(handle.stats()["served"])
        m.rollback("test: roll back mid-flight")
        for e in events[b:]:
            shop.bus.dispatch(e.model_copy(deep=True))
        m.settle()
    finally:
        handle.close()

    assert served_mid["candidate"] == b - a  # primary: the candidate served every event
    assert not shop.violations  # no payment found its order in the wrong state
    assert final_states(shop.bus, orders) == final_states(pure.bus, orders)
    assert Counter(shop.ledger) == Counter(pure.ledger)  # every real side effect exactly once
    # no event handled twice: each root event once, and as many cascaded events of each type
    roots = {e.id for e in events}
    assert Counter(h for h in shop.handled if h[1] in roots) == Counter(h for h in pure.handled if h[1] in roots)
    assert max(Counter(h for h in shop.handled if h[1] in roots).values()) == 1
    assert Counter(t for t, _ in shop.handled) == Counter(t for t, _ in pure.handled)
    # sagas in flight at each switch were handed over, and every one is back on legacy
    audit = m.handovers()
    to_candidate = {h["saga"] for h in audit if h["to"] == "candidate"}
    to_legacy = {h["saga"] for h in audit if h["to"] == "legacy"}
    assert to_candidate and to_candidate == to_legacy
    assert all(m.saga(o)["side"] == "legacy" for o in orders)


# -- kill -9 during a handover --------------------------------------------------------------

def drive(mode, url, n, kill_at=0, **env):
    """Run saga_driver MODE in a forked child of this process (a process of its own, killed by SIGKILL
    like any other), so the ten runs of a test do not pay ten interpreter starts and LangGraph imports."""
    import forked
    import saga_driver

    return forked.run(lambda: saga_driver.main([mode, url, str(n), str(kill_at)]), env={k: str(v) for k, v in env.items()})


def recovered(url, n):
    import json

    proc = drive("recover", url, n)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def assert_one_side_each(report, expected):
    for order, saga in report["sagas"].items():
        assert not saga["moving"], order
        if not expected[order]:  # a saga not begun yet has no state on either side
            assert not saga["legacy_has"] and not saga["candidate_has"] and saga["state"] == {}, order
            continue
        assert saga["legacy_has"] != saga["candidate_has"], f"{order} is on both sides or neither: {saga}"
        assert saga["side"] == ("legacy" if saga["legacy_has"] else "candidate"), order
        assert saga["state"] == expected[order], order


def test_kill_9_during_a_handover_leaves_each_saga_on_exactly_one_side_with_its_full_state(redis_url):
    import signal

    n = 60
    events = saga_app.events(n)
    pure = run_pure([e for e in events if e.type != "OrderShipped"])
    before_ship = {o: pure.bus.state_for(o) for o in sorted({e.correlation_id for e in events})}
    assert drive("legacy", redis_url, n).returncode == 0

    # promote and hand every saga to the candidate; die in the middle of the 25th handover
    proc = drive("promote", redis_url, n, kill_at=25)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    report = recovered(redis_url, n)
    assert report["recovered"] == 1  # the one cut between intent and commit
    assert_one_side_each(report, before_ship)
    sides = Counter(s["side"] for s in report["sagas"].values())
    assert sides == {"candidate": 25, "legacy": n - 25}

    # finish the promotion, then roll back and die in the middle of handing them back
    assert drive("promote", redis_url, n).returncode == 0
    assert all(s["side"] == "candidate" for s in recovered(redis_url, n)["sagas"].values())
    proc = drive("rollback", redis_url, n, kill_at=40)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    report = recovered(redis_url, n)
    assert report["recovered"] == 1
    assert_one_side_each(report, before_ship)

    # the rest of the saga runs where each one now is, and ends as on pure legacy
    assert drive("rollback", redis_url, n).returncode == 0
    assert drive("ship", redis_url, n).returncode == 0
    final = recovered(redis_url, n)
    pure_final = run_pure(events)
    assert_one_side_each(final, {o: pure_final.bus.state_for(o) for o in final["sagas"]})
    assert all(s["side"] == "legacy" for s in final["sagas"].values())


@pytest.mark.parametrize("cutoff", ["resume", "rewind"])
def test_a_run_cut_off_mid_event_is_resumed_or_rewound_on_rollback_and_no_effect_runs_twice(redis_url, tmp_path, cutoff):
    import json
    import signal

    n = 8
    ledger = tmp_path / "effects.jsonl"
    events = [e for e in saga_app.events(n) if e.type != "OrderShipped"]
    cut = next(i for i, e in enumerate(events) if e.id == "o00003-1")  # o00003's payment dies in send_receipt

    proc = drive("pay", redis_url, n, SAGA_KILL_ORDER="o00003", SAGA_LEDGER=ledger)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    made = [tuple(json.loads(line)) for line in ledger.read_text().splitlines()]
    assert ("charge", "o00003", 103) in made and ("mail", "o00003@example.com", "receipt") not in made

    proc = drive("rollback", redis_url, n, SAGA_CUTOFF=cutoff, SAGA_LEDGER=ledger)
    assert proc.returncode == 0, proc.stderr
    report = recovered(redis_url, n)
    pure = run_pure(events[: cut + 1])  # every event up to the cut one, handled once, on legacy
    assert_one_side_each(report, {o: pure.bus.state_for(o) for o in report["sagas"]})
    assert all(s["side"] == "legacy" for s in report["sagas"].values())
    made = [tuple(json.loads(line)) for line in ledger.read_text().splitlines()]
    assert Counter(made) == Counter(tuple(x) for x in pure.ledger)  # each real effect exactly once, across both sides
    audit = [h for h in report["audit"] if h.get("cutoff")]
    done = {"resume": "resumed", "rewind": "rewound"}[cutoff]
    assert [(h["saga"], h["to"], h["cutoff"], h["cutoff_event"]) for h in audit] == [("o00003", "legacy", done, "o00003-1")]


# -- sticky canary ---------------------------------------------------------------------------


def test_canary_routes_every_event_of_a_saga_one_way_and_the_share_matches_the_percentage(redis_url):
    import math

    events = saga_app.events(600, seed=3)
    pure = run_pure(events)
    shop = saga_app.build()
    m = Migration("saga-canary", legacy=shop.bus, candidate=flow_from_bus(shop.bus), store="memory://")
    m.promote(to="canary", percent=30)
    routes: dict[str, set[str]] = {}
    with m.attach(redis_url) as handle:
        for e in events:
            routes.setdefault(e.correlation_id, set()).add(m.route(e))
            shop.bus.dispatch(e.model_copy(deep=True))
        served = handle.stats()["served"]
    assert all(len(r) == 1 for r in routes.values())  # sticky: one path per saga
    on_candidate = sum(1 for r in routes.values() if r == {"candidate"})
    assert served["candidate"] == 3 * on_candidate and served["legacy"] == 3 * (600 - on_candidate)
    # no saga changed sides: the candidate's sagas were claimed new, no state moved
    audit = m.handovers()
    assert len(audit) == on_candidate and all(h["claim"] and h["keys"] == 0 for h in audit)
    assert not shop.violations
    assert {o: shop.bus.state_for(o) for o in routes if routes[o] == {"legacy"}} == {
        o: pure.bus.state_for(o) for o in routes if routes[o] == {"legacy"}
    }
    assert {o: m.saga(o)["state"] for o in routes if routes[o] == {"candidate"}} == {
        o: pure.bus.state_for(o) for o in routes if routes[o] == {"candidate"}
    }
    # the share within sampling error: 10,000 correlation ids, 4 standard deviations
    ids = [f"order-{i}" for i in range(10_000)]
    from legacy_bus import Event

    share = sum(m.route(Event(type="OrderPlaced", correlation_id=i)) == "candidate" for i in ids) / len(ids)
    assert abs(share - 0.30) < 4 * math.sqrt(0.3 * 0.7 / len(ids))
    assert abs(on_candidate / 600 - 0.30) < 4 * math.sqrt(0.3 * 0.7 / 600)


# -- primary: the candidate serves for real, legacy shadows it --------------------------------


def test_in_primary_the_candidate_serves_for_real_and_the_legacy_shadow_is_compared_against_it(redis_url):

    shop = saga_app.build()

    def send_receipt_v2(e, ctx):  # the new receipt template: a visible behaviour change
        shop.bus.ports["mail.send"](f"{e.payload['order']}@example.com", "receipt-v2")
        ctx.state["receipts"] = ctx.state.get("receipts", 0) + 1

    flow = flow_from_bus(shop.bus).replace("send_receipt", send_receipt_v2)
    m = Migration("saga-primary", legacy=shop.bus, candidate=flow, store=redis_url)
    m.promote(to="primary")
    events = saga_app.events(30, seed=5)
    with m.attach() as handle:
        for e in events:
            shop.bus.dispatch(e.model_copy(deep=True))
        assert handle.flush(10)
        assert handle.stats()["served"] == {"legacy": 0, "candidate": 90}
    # real side effects are the candidate's only: the legacy shadow sent no mail
    mails = [x for x in shop.ledger if x[0] == "mail"]
    assert len(mails) == 30 and {x[2] for x in mails} == {"receipt-v2"}
    assert sum(1 for x in shop.ledger if x[0] == "charge") == 30

    w = m.worker(max_events=90, block_ms=100, evidence_every=0.0)
    w.run()
    assert (w.stats.recorded, w.stats.divergent, w.stats.errors) == (90, 30, 0)
    # the policy saw a proven divergence in primary: rolled back automatically, and says why
    assert m.phase_state.phase == "rolled_back" and m.history()[-1]["by"] == "automatic"
    groups = m.shadow_status()["groups"]
    assert len(groups) == 1
    ex = groups[0]["example"]
    assert ex["kind"].startswith("effect") and ex["node"] == "send_receipt"
    assert "receipt" in str(ex["legacy"]) and "receipt-v2" in str(ex["candidate"])
    m.close()


def test_once_the_candidate_serves_a_dead_store_fails_the_event_clearly_and_runs_it_nowhere():
    from servers import RedisServer

    from migration_errors import StoreUnavailable

    server = RedisServer.start()
    try:
        shop = saga_app.build()
        m = Migration("saga-dead-store", legacy=shop.bus, candidate=flow_from_bus(shop.bus), store=server.url)
        m.promote(to="primary")
        events = saga_app.events(2)
        with m.attach() as handle:
            shop.bus.dispatch(events[0])
            assert handle.stats()["served"]["candidate"] == 1
            handled = list(shop.handled)
            server.stop()
            with pytest.raises(StoreUnavailable) as err:
                shop.bus.dispatch(events[1])
            time.sleep(m.phase_ttl + 0.1)  # the phase itself is read again now, and cannot be
            with pytest.raises(StoreUnavailable, match="cannot read the phase") as err2:
                shop.bus.dispatch(events[1])
        assert shop.handled == handled  # not run on either side
        for e in (err, err2):
            message = str(e.value)
            assert "was not run on either side" in message and "roll back" in message and events[1].id in message
    finally:
        server.stop()


def test_async_publishes_are_routed_and_handed_over_like_sync_ones(redis_url):
    import asyncio

    events = saga_app.events(40, seed=11)
    pure = run_pure(events)
    shop = saga_app.build()
    m = Migration("saga-async", legacy=shop.bus, candidate=flow_from_bus(shop.bus), store="memory://")

    async def main():
        with m.attach(redis_url) as handle:
            for i, e in enumerate(events):
                if i == 40:
                    m.promote(to="primary")
                if i == 80:
                    m.rollback("test: async rollback")
                await shop.bus.adispatch(e.model_copy(deep=True))
            return handle.stats()["served"]

    served = asyncio.run(main())
    m.settle()
    assert served == {"legacy": 80, "candidate": 40}
    assert not shop.violations
    assert {o: shop.bus.state_for(o) for o in pure.bus.state_store._states} == dict(pure.bus.state_store._states)
    assert Counter(shop.ledger) == Counter(pure.ledger)


def test_raising_the_canary_moves_sagas_mid_flight_and_retired_serves_the_candidate_alone(redis_url):
    events = saga_app.events(300, seed=13)
    pure = run_pure(events)
    shop = saga_app.build()
    m = Migration("saga-steps", legacy=shop.bus, candidate=flow_from_bus(shop.bus), store="memory://")
    m.promote(to="canary", percent=20)
    with m.attach(redis_url) as handle:
        for i, e in enumerate(events):
            if i == 300:
                m.promote(percent=60)  # sagas between 20 and 60 move to the candidate mid-flight
            if i == 600:
                m.promote(to="retired")
                assert handle.flush(10)
                sent_before_retired = handle.stats()["sent"]
            shop.bus.dispatch(e.model_copy(deep=True))
        assert handle.flush(10)
        stats = handle.stats()
    assert stats["sent"] == sent_before_retired == 600  # retired: the candidate alone, nothing shadowed
    assert stats["served"] == {"legacy": stats["served"]["legacy"], "candidate": 900 - stats["served"]["legacy"]}
    moved = [h for h in m.handovers() if not h.get("claim")]
    assert moved and all(h["to"] == "candidate" for h in moved)  # forward steps only move sagas forward
    assert not shop.violations
    orders = sorted(pure.bus.state_store._states)
    assert {o: m.saga(o)["state"] for o in orders} == {o: pure.bus.state_for(o) for o in orders}
    assert not all(m.saga(o)["side"] == "candidate" for o in orders)  # sagas finished on legacy stay there...
    m.settle("retired: move the rest")  # ...until the legacy store is emptied
    assert all(m.saga(o)["side"] == "candidate" for o in orders) and len(shop.bus.state_store) == 0
    assert {o: m.saga(o)["state"] for o in orders} == {o: pure.bus.state_for(o) for o in orders}
    assert Counter(shop.ledger) == Counter(pure.ledger)


def test_an_event_arriving_during_a_handover_waits_for_it_and_then_goes_one_way(redis_url):
    import threading

    from legacy_bus import InMemoryStateStore

    class SlowStore(InMemoryStateStore):
        slow = threading.Event()
        holding = threading.Event()

        def save(self, key, state):
            if self.slow.is_set() and not state:  # the handover clearing legacy: hold it open
                self.holding.set()
                time.sleep(0.3)
            super().save(key, state)

    store = SlowStore()
    shop = saga_app.build(store)
    pure = saga_app.build()
    events = saga_app.events(1)
    for e in events[:2]:
        shop.bus.dispatch(e.model_copy(deep=True))
    m = Migration("saga-race", legacy=shop.bus, candidate=flow_from_bus(shop.bus), store="memory://")
    with m.attach(redis_url) as handle:
        m.promote(to="primary")
        store.slow.set()
        mover = threading.Thread(target=m.settle, args=("promoted",), kwargs={"sagas": ["o00000"]})
        mover.start()
        assert store.holding.wait(30), "the handover never reached the legacy store"  # it is under way, holding the saga
        shop.bus.dispatch(events[2].model_copy(deep=True))  # waits for it, then runs on the candidate
        mover.join()
        served = handle.stats()["served"]
    for e in events:
        pure.bus.dispatch(e.model_copy(deep=True))
    assert served == {"legacy": 0, "candidate": 1}
    assert not shop.violations
    assert m.saga("o00000") == {"side": "candidate", "state": pure.bus.state_for("o00000"), "handovers": 1}
    assert [(h["from"], h["to"]) for h in m.handovers()] == [("legacy", "candidate")]
