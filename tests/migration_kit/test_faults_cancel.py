"""Async publishes cancelled at random points (1,000 across the phases): no lock leaks, no saga hangs.

Each round starts one ``adispatch``, lets the loop run a random number of
steps (so the cancellation lands while the publish waits for its saga's lock,
inside a store call run in a thread, inside the handler, or after it), then
cancels it, half the time through ``asyncio.wait_for`` timing out. A publish
of the same saga follows, uncancelled: it must finish (a leaked lock would
hang it) and run its handler exactly once. A cancelled publish ran its
handler at most once on legacy; on the candidate a run cut off mid-node is
resumed when the saga's next event arrives, so that node may run once more
(at most twice in all). At the end no saga lock is held.
"""

from __future__ import annotations

import asyncio
import random

import pytest
from faults import SERVING, Boom, Live, set_phase

from migration_errors import HandlerError, StoreUnavailable

ROUNDS = 250  # per phase: 1,000 cancellations over the four phases


async def _outcome(coro: object) -> str:
    try:
        await coro  # type: ignore[misc]
    except asyncio.CancelledError:
        return "cancelled"
    except asyncio.TimeoutError:
        return "cancelled"
    except (Boom, HandlerError):
        return "boom"
    except StoreUnavailable:
        return "unavailable"
    return "ok"


@pytest.mark.parametrize("phase", ["shadow", "canary", "primary", "retired"])
def test_async_publishes_cancelled_at_random_points_leak_no_lock_and_hang_no_saga(redis_url, phase):
    live = Live(f"faults-cancel-{phase}", redis_url, redis_url, phase, attach=False, awaits=True)
    set_phase(live.m, phase)
    live.attach()
    rng = random.Random(f"cancel-{phase}")
    bus = live.bus
    cancelled: dict[str, str] = {}
    followers: dict[str, str] = {}

    async def rounds() -> None:
        took = 0.001  # a running estimate of how long an uncancelled publish takes
        loop = asyncio.get_running_loop()
        for _ in range(ROUNDS):
            e = live.event()
            how = rng.randrange(3)
            if how == 0:  # after a few loop steps: waiting for the lock, or the first store call
                task = asyncio.ensure_future(bus.adispatch(e))
                for _ in range(rng.randrange(4)):
                    await asyncio.sleep(0)
                task.cancel()
                cancelled[e.id] = await _outcome(task)
            elif how == 1:  # at a random moment of the publish's usual run time
                task = asyncio.ensure_future(bus.adispatch(e))
                loop.call_later(rng.uniform(0, 1.2 * took), task.cancel)
                cancelled[e.id] = await _outcome(task)
            else:  # asyncio.wait_for timing out
                cancelled[e.id] = await _outcome(asyncio.wait_for(bus.adispatch(e), rng.uniform(0, 1.2 * took)))
            follow = e.model_copy(update={"id": f"{e.id}-next", "payload": {**e.payload, "boom": False}})
            started = loop.time()
            # must finish: a lock left held by the cancelled publish would hang it
            followers[follow.id] = await _outcome(asyncio.wait_for(bus.adispatch(follow), 10))
            assert followers[follow.id] == "ok", f"{e.id} ({cancelled[e.id]}): the saga's next publish did not finish"
            took = 0.8 * took + 0.2 * (loop.time() - started)
        locks = live.handle.cutover.ledger.locks
        for _ in range(2000):  # store calls a cancellation cut off finish in their threads, then release
            if not locks.held():
                break
            await asyncio.sleep(0.005)

    live.loop.run_until_complete(rounds())
    candidate = phase in SERVING
    assert set(followers.values()) <= {"ok"}, followers
    for eid in followers:
        assert live.runs[eid] == 1, (eid, live.runs[eid])
    for eid, out in cancelled.items():
        if out == "cancelled":
            assert live.runs[eid] <= (2 if candidate else 1), (eid, live.runs[eid])
        else:
            assert live.runs[eid] == 1, (eid, out, live.runs[eid])
    assert list(cancelled.values()).count("cancelled") > ROUNDS // 5  # the cancellations did land
    live.check()
