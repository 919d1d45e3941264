"""Notifications on blinker: a comment fans out to mentions; receivers filter by sender."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import blinker

from legacy_bus import EffectPort
from legacy_bus.adapters import blinker_bus


@dataclass(frozen=True)
class Comment:
    author: str
    thread: str
    text: str


@dataclass
class Notify:
    signals: blinker.Namespace
    bus: object = None
    pushed: list = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    push: object = None
    receivers: list = field(default_factory=list)  # blinker holds receivers weakly: the app keeps them

    def post(self, site: str, comment: Comment) -> None:
        """The app's entry point: blinker's ``send``, as it always was."""
        self.signals["comment_posted"].send(site, comment=comment)


def build() -> Notify:
    """The app: its signals, its receivers, and the adapter over them."""
    ns = blinker.Namespace()
    posted, mentioned, sent = ns.signal("comment_posted"), ns.signal("mention_found"), ns.signal("notification_sent")
    app = Notify(ns)
    push = app.push = EffectPort("push.send", lambda user, text: app.pushed.append((user, text)))

    def extract_mentions(site, comment):
        for user in re.findall(r"@(\w+)", comment.text):
            mentioned.send(site, user=user, comment=comment)

    def notify_forum_moderators(site, comment):  # only for the forum
        if "spam" in comment.text:
            push("moderators", f"check {comment.thread}")

    def deliver(site, user, comment):
        push(user, f"{comment.author} mentioned you in {comment.thread}")
        sent.send(site, user=user)

    def count(site, user):
        app.counts[user] = app.counts.get(user, 0) + 1

    posted.connect(extract_mentions)
    posted.connect(notify_forum_moderators, sender="forum")
    mentioned.connect(deliver)
    sent.connect(count)
    app.receivers += [extract_mentions, notify_forum_moderators, deliver, count]
    app.bus = blinker_bus(posted, mentioned, sent, name="notify")
    return app


def deliver_v2(app: Notify):
    """v2 of ``deliver``: a shorter push text (a change the replay must catch)."""

    def deliver(site, user, comment):
        app.push(user, f"{comment.author} mentioned you")
        app.signals["notification_sent"].send(site, user=user)

    return deliver
