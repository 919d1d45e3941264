"""The blinker notification app: its own tests pass on blinker alone, through the adapter, and with
the derived graph serving; replay and live shadow show parity; a changed receiver is caught."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from examples.notify.app import Comment, build, deliver_v2
from migration_kit.testing import assert_parity

sys.path.insert(0, str(Path(__file__).parent))
from example_paths import live_shadow, served_by, twin_migration  # noqa: E402


@pytest.fixture(params=["blinker", "bus", "graph"])
def app(request):
    app = build()
    if request.param == "blinker":
        app.bus.close()
        yield app
        return
    with served_by(request.param, app.bus, lambda: request.getfixturevalue("redis_url")):
        yield app


def test_every_mention_is_pushed_and_counted(app):
    app.post("blog", Comment("ann", "t1", "hi @bob and @cy"))
    assert app.pushed == [("bob", "ann mentioned you in t1"), ("cy", "ann mentioned you in t1")]
    assert app.counts == {"bob": 1, "cy": 1}


def test_forum_spam_goes_to_moderators_but_blog_spam_does_not(app):
    app.post("blog", Comment("ann", "t1", "spam"))
    assert app.pushed == []
    app.post("forum", Comment("ann", "t2", "spam @bob"))
    assert sorted(app.pushed) == [("bob", "ann mentioned you in t2"), ("moderators", "check t2")]


def _comments(app, n=8):
    return [
        app.bus.codec.to_event(("comment_posted", (["blog", "forum"][i % 2],), {"comment": Comment("ann", f"t{i}", f"@u{i} spam" if i % 3 else "@bob")}))
        for i in range(n)
    ]


def test_replay_of_comments_shows_parity():
    live, m = twin_migration(build)
    assert_parity(m, _comments(live))


def test_a_changed_delivery_is_caught_and_localized_to_its_receiver():
    def change(flow, twin):
        flow.replace("deliver", twin.bus.wrap("mention_found", deliver_v2(twin)))

    live, m = twin_migration(build, change=change)
    report = m.replay(_comments(live))
    assert report.divergent == 8 and report.by_node == {"deliver": 8}


def test_live_shadow_of_comments_shows_parity(redis_url):
    live, m = twin_migration(build, store=redis_url)

    def traffic():
        for i in range(6):
            live.post("forum", Comment("ann", f"t{i}", f"@u{i}"))
        return 6

    status = live_shadow(m, redis_url, traffic)
    assert (status["compared"], status["divergent"], status["errors"]) == (6, 0, 0)
