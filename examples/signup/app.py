"""Signup on a pyee ``EventEmitter``: nested emits run depth-first, and the trial relies on it."""

from __future__ import annotations

import datetime as dt
import enum
from dataclasses import dataclass, field

from pyee import EventEmitter

from legacy_bus import EffectPort
from legacy_bus.adapters import pyee_bus


class Plan(enum.Enum):
    FREE = "free"
    PRO = "pro"


@dataclass(frozen=True)
class User:
    email: str
    name: str
    plan: Plan
    signed_up: dt.date


class DuplicateEmail(Exception):
    """Someone already registered with this address."""


@dataclass
class Account:
    user: User
    welcomed: bool = False
    trial_days: int = 0


@dataclass
class Signup:
    emitter: EventEmitter
    bus: object
    accounts: dict[str, Account] = field(default_factory=dict)
    outbox: list = field(default_factory=list)
    mail: object = None

    def register(self, email: str, name: str, plan: Plan = Plan.FREE, on: dt.date = dt.date(2026, 12, 1)) -> bool:
        """The app's entry point: pyee's ``emit``, as it always was."""
        return self.emitter.emit("user_registered", User(email, name, plan, on))


def build() -> Signup:
    """The app: its emitter, its listeners, and the adapter over them."""
    ee = EventEmitter()
    app = Signup(ee, None)
    mail = app.mail = EffectPort("mail.send", lambda to, subject: app.outbox.append((to, subject)))

    @ee.on("user_registered")
    def create_account(user: User) -> None:
        if user.email in app.accounts:
            raise DuplicateEmail(user.email)
        app.accounts[user.email] = Account(user)
        ee.emit("account_created", user)

    @ee.on("user_registered")
    def start_trial(user: User) -> None:
        # pyee ran account_created's listeners (the welcome) before this one: depth-first
        account = app.accounts[user.email]
        if not account.welcomed:
            raise RuntimeError(f"welcomed: {account.welcomed}")
        account.trial_days = 30 if user.plan is Plan.PRO else 14

    @ee.on("account_created")
    def send_welcome(user: User) -> None:
        mail(user.email, f"Welcome, {user.name}!")
        ee.emit("welcome_sent", user.email)

    @ee.on("welcome_sent")
    def mark_welcomed(email: str) -> None:
        app.accounts[email].welcomed = True

    app.bus = pyee_bus(ee, name="signup")
    return app


def send_welcome_v2(app: Signup):
    """v2 of ``send_welcome``: greets by plan (a change the replay must catch)."""

    def send_welcome(user: User) -> None:
        app.mail(user.email, f"Welcome to {user.plan.value}, {user.name}!")
        app.emitter.emit("welcome_sent", user.email)

    return send_welcome
