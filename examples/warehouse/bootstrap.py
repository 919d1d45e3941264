"""Wiring: the app on its own bus, or on migration-kit's ``message_bus`` (one line differs)."""

from __future__ import annotations

from dataclasses import dataclass, field

from examples.warehouse import handlers, model
from examples.warehouse.messagebus import MessageBus
from examples.warehouse.unit_of_work import UnitOfWork
from legacy_bus import EffectPort
from legacy_bus.adapters import message_bus


@dataclass
class Outbox:
    """Stands in for e-mail and Redis pub/sub: what was sent, in order."""

    sent: list = field(default_factory=list)

    def send(self, to: str, body: str) -> None:
        self.sent.append((to, body))

    def publish(self, channel: str, event: object) -> None:
        self.sent.append((channel, event))


@dataclass
class App:
    bus: object
    uow: UnitOfWork
    outbox: Outbox


def bootstrap(*, own_bus: bool = False, event_handlers=None) -> App:
    """The app; ``own_bus=True`` runs it on its own ``MessageBus`` instead of the adapter."""
    uow, outbox = UnitOfWork(), Outbox()
    # The side effects are effect ports, so a migration's replays and shadows never send for real.
    notify = EffectPort("notifications.send", outbox.send)
    dependencies = {"uow": uow, "notifications": _Notifications(notify), "publish": EffectPort("redis.publish", outbox.publish)}
    events = event_handlers or handlers.EVENT_HANDLERS
    if own_bus:
        bus = MessageBus(uow, events, handlers.COMMAND_HANDLERS, dependencies)
    else:
        bus = message_bus("warehouse", {**events, **handlers.COMMAND_HANDLERS}, dependencies=dependencies, collect=lambda uow: uow.collect_new_events(), errors={model.Event: "log", model.Command: "raise"})
    return App(bus, uow, outbox)


class _Notifications:
    def __init__(self, port: EffectPort) -> None:
        self.send = port
