"""Wiring: the app on its own bus, or on migration-kit's ``message_bus`` (the bus line and the database line differ)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine
from sqlalchemy.orm import sessionmaker

from examples.warehouse import handlers, model, orm
from examples.warehouse.messagebus import MessageBus
from examples.warehouse.unit_of_work import SqlAlchemyUnitOfWork
from legacy_bus import EffectPort
from legacy_bus.adapters import message_bus

#: where the warehouse keeps its tables unless told: a SQLite file (a PostgreSQL URL in production)
DB_URL_ENV = "WAREHOUSE_DB_URL"


def default_url() -> str:
    """``$WAREHOUSE_DB_URL`` (e.g. ``postgresql+psycopg://...``), else ``warehouse.sqlite`` in this directory."""
    return os.environ.get(DB_URL_ENV) or f"sqlite:///{Path.cwd() / 'warehouse.sqlite'}"


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
    bus: Any
    uow: SqlAlchemyUnitOfWork
    outbox: Outbox
    engine: Any


def bootstrap(*, own_bus: bool = False, event_handlers=None, db_url: str | None = None, create: bool = True) -> App:
    """The app on the database at ``db_url`` (default: ``default_url()``); ``own_bus=True``: on its own ``MessageBus``."""
    orm.start_mappers()
    engine = create_engine(db_url or default_url())
    if create:
        orm.metadata.create_all(engine)
    sessions = sessionmaker(engine, expire_on_commit=False)
    uow, outbox = SqlAlchemyUnitOfWork(sessions), Outbox()
    # The side effects are effect ports, so a migration's replays and shadows never send for real.
    notify = EffectPort("notifications.send", outbox.send)
    dependencies = {"uow": uow, "notifications": _Notifications(notify), "publish": EffectPort("redis.publish", outbox.publish)}
    events = event_handlers or handlers.EVENT_HANDLERS
    if own_bus:
        bus = MessageBus(uow, events, handlers.COMMAND_HANDLERS, dependencies)
    else:
        bus = message_bus("warehouse", {**events, **handlers.COMMAND_HANDLERS}, dependencies=dependencies, collect=lambda uow: uow.collect_new_events(), errors={model.Event: "log", model.Command: "raise"})
        # Declared beside the effect ports: live it is the real database; replays and shadows roll back.
        uow.session_factory = bus.database("warehouse", sessions)
    return App(bus, uow, outbox, engine)


class _Notifications:
    def __init__(self, port: EffectPort) -> None:
        self.send = port
