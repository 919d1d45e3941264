"""The pyee signup app: its own tests pass on pyee alone, through the adapter, and with the derived
graph serving (depth-first kept); replay and live shadow show parity; a changed listener is caught."""

from __future__ import annotations

import datetime as dt
import sys
from pathlib import Path

import pytest

from examples.signup.app import DuplicateEmail, Plan, User, build, send_welcome_v2
from migration_kit.testing import assert_parity

sys.path.insert(0, str(Path(__file__).parent))
from example_paths import live_shadow, served_by, twin_migration  # noqa: E402


@pytest.fixture(params=["pyee", "bus", "graph"])
def app(request):
    """pyee alone (adapter closed), pyee observed by the adapter, and the derived graph serving."""
    app = build()
    if request.param == "pyee":
        app.bus.close()
        yield app
        return
    with served_by(request.param, app.bus, lambda: request.getfixturevalue("redis_url")):
        yield app


def test_registering_welcomes_before_the_trial_starts(app):
    assert app.register("ann@example.com", "Ann", Plan.PRO) is True
    account = app.accounts["ann@example.com"]
    assert account.welcomed and account.trial_days == 30
    assert app.outbox == [("ann@example.com", "Welcome, Ann!")]


def test_a_duplicate_email_is_refused_with_the_apps_own_error(app):
    app.register("bob@example.com", "Bob")
    with pytest.raises(DuplicateEmail, match="bob@example.com"):
        app.register("bob@example.com", "Bobby")
    assert len(app.outbox) == 1


def test_free_plans_get_a_two_week_trial(app):
    app.register("cy@example.com", "Cy")
    assert app.accounts["cy@example.com"].trial_days == 14


def _signups(app, n=8):
    return [
        app.bus.codec.to_event(("user_registered", (User(f"u{i}@example.com", f"U{i}", Plan.PRO if i % 2 else Plan.FREE, dt.date(2026, 11, i + 1)),), {}))
        for i in range(n)
    ]


def test_replay_of_signups_shows_parity():
    live, m = twin_migration(build)
    assert_parity(m, _signups(live))


def test_a_changed_welcome_is_caught_and_localized_to_its_listener():
    def change(flow, twin):
        flow.replace("send_welcome", twin.bus.wrap("account_created", send_welcome_v2(twin)))

    live, m = twin_migration(build, change=change)
    report = m.replay(_signups(live))
    assert report.divergent == 8 and report.by_node == {"send_welcome": 8}


def test_live_shadow_of_signups_shows_parity(redis_url):
    live, m = twin_migration(build, store=redis_url)

    def traffic():
        for i in range(6):
            live.register(f"live{i}@example.com", f"L{i}")
        return 6

    status = live_shadow(m, redis_url, traffic)
    assert (status["compared"], status["divergent"], status["errors"]) == (6, 0, 0)
