"""Fault injection on the live path: real redis-server processes misbehaving under live publishes, in every phase.

Each test runs one fault against one phase, publishing sync and async
(alternately) before, during and after it, and checks the laws in
``faults.Live.check``: every publish ran its handler exactly once on one side,
or (where the candidate serves) failed with ``StoreUnavailable`` and ran
nowhere; only the handler's own exception reached the caller; no saga lock
stays held; what was shed is counted. In ``shadow`` and ``rolled_back`` the
publisher's thread never sends anything to Redis.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time

import pytest
from faults import PHASES, SERVING, Live, NetworkSpy, set_phase
from servers import RedisServer, redis_binary

TIGHT = "?socket_timeout=0.25&socket_connect_timeout=0.25"  # the serving path's deadline, tightened for speed


def fault_down_before_attach(live: Live, server: RedisServer) -> None:
    server.kill()
    live.attach()  # Redis is gone: the phase is unknown, legacy serves
    live.publish(6)
    since = time.monotonic()
    server.restart()
    live.wait_fresh(since)
    live.publish(6)


def fault_killed(live: Live, server: RedisServer) -> None:
    live.publish(6)
    server.kill()
    live.publish(6)
    since = time.monotonic()
    server.restart()  # with AOF or without (the test's server args say)
    live.wait_fresh(since)
    live.publish(6)


def fault_client_pause(live: Live, server: RedisServer) -> None:
    live.publish(4)
    server.cli("CLIENT", "PAUSE", "600", "ALL")
    ends = time.monotonic() + 0.6
    live.publish_until(lambda: time.monotonic() > ends)
    live.wait_fresh(ends)
    live.publish(4)


def fault_debug_sleep(live: Live, server: RedisServer) -> None:
    live.publish(4)
    sleeper = subprocess.Popen(
        [redis_binary("redis-cli"), "-p", str(server.port), "DEBUG", "SLEEP", "0.6"], stdout=subprocess.DEVNULL
    )
    live.publish_until(lambda: sleeper.poll() is not None)
    sleeper.wait(10)
    live.wait_fresh(time.monotonic())
    live.publish(4)


def fault_sigstop(live: Live, server: RedisServer) -> None:
    live.publish(4)
    os.kill(server.process.pid, signal.SIGSTOP)
    try:
        ends = time.monotonic() + 0.8
        live.publish_until(lambda: time.monotonic() > ends)
    finally:
        os.kill(server.process.pid, signal.SIGCONT)
    live.wait_fresh(time.monotonic())
    live.publish(4)


FAULTS = {
    "down_before_attach": ((), fault_down_before_attach),
    "killed_restarted_without_aof": ((), fault_killed),
    "killed_restarted_with_aof": (("--appendonly", "yes", "--appendfsync", "always"), fault_killed),
    "client_pause": ((), fault_client_pause),
    "debug_sleep": (("--enable-debug-command", "yes"), fault_debug_sleep),
    "sigstop_sigcont": ((), fault_sigstop),
}


@pytest.mark.parametrize("phase", PHASES)
@pytest.mark.parametrize("fault", list(FAULTS))
def test_every_publish_runs_once_or_fails_as_documented_under_the_fault(fault, phase):
    args, inject = FAULTS[fault]
    server = RedisServer.start(*args)
    try:
        url = server.url + TIGHT
        live = Live(f"faults-{fault}-{phase}", url, url, phase, attach=False)
        set_phase(live.m, phase)
        if inject is not fault_down_before_attach:
            live.attach()
        with NetworkSpy() as spy:
            inject(live, server)
        counts = live.check()
        assert counts.get("ok", 0) + counts.get("boom", 0) > 0
        if phase not in SERVING:
            # shadow and rolled back: the publisher (this thread) never sent a byte to Redis
            assert spy.threads and threading.get_ident() not in spy.threads  # others (refresher, sender) did
            assert counts.get("unavailable", 0) == 0
    finally:
        os.kill(server.process.pid, signal.SIGCONT)
        server.stop()


@pytest.mark.parametrize("phase", ["shadow", "rolled_back"])
def test_a_sqlite_store_that_cannot_be_opened_leaves_legacy_serving_and_counts_it(tmp_path, redis_url, phase):
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("a file where the store's directory should be")
    live = Live(f"faults-sqlite-{phase}", f"sqlite:///{blocker}/store.sqlite", redis_url, phase, attach=False)
    if phase == "rolled_back":
        # the phase was set while the store could be opened; now it cannot (a new process would see this)
        live.m.use_store(f"sqlite:///{tmp_path}/ok.sqlite")
        set_phase(live.m, phase)
        live.m.use_store(f"sqlite:///{blocker}/store.sqlite")
    live.attach()
    live.publish(20)
    view = live.handle.cutover.view
    assert view.failures >= 1 and view.last_error  # counted (and traced) by the phase view
    counts = live.check()
    assert counts == {"ok": 17, "boom": 3}


@pytest.mark.parametrize("phase", ["canary", "primary"])
def test_a_saga_stuck_in_its_lock_does_not_block_an_unrelated_saga(redis_url, phase):
    live = Live(f"faults-stuck-{phase}", redis_url, redis_url, phase, attach=False)
    set_phase(live.m, phase)
    live.attach()
    locks = live.handle.cutover.ledger.locks
    held, release = threading.Event(), threading.Event()

    def stuck() -> None:
        with locks.hold("saga-stuck"):
            held.set()
            release.wait(30)

    t = threading.Thread(target=stuck)
    t.start()
    try:
        assert held.wait(10)
        live.publish(10)  # sagas saga-0..saga-4: none waits for saga-stuck
        assert locks.held() == ["saga-stuck"]
    finally:
        release.set()
        t.join(10)
    live.check()


def test_the_staleness_bound_holds_for_a_promotion_made_in_another_process(redis_url):
    live = Live("faults-bound", redis_url, redis_url, "shadow")
    other = Live("faults-bound", redis_url, redis_url, "shadow", attach=False).m
    since = time.monotonic()
    other.promote(to="primary")
    live.wait_fresh(since)  # one refresh after the promotion
    assert live.handle.cutover.view.seen.phase == "primary"
    live.publish(4)
    assert live.handle.stats()["served"]["candidate"] == 4
    live.check()
    other.close()
