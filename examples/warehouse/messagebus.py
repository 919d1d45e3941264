"""The app's own message bus, as Cosmic Python writes it: commands raise, event errors are logged."""

from __future__ import annotations

import inspect
import logging

from examples.warehouse import model

logger = logging.getLogger(__name__)


class MessageBus:
    def __init__(self, uow, event_handlers, command_handlers, dependencies):
        self.uow = uow
        inject = lambda h: lambda m: h(m, **{k: v for k, v in dependencies.items() if k in inspect.signature(h).parameters})  # noqa: E731
        self.event_handlers = {t: [inject(h) for h in hs] for t, hs in event_handlers.items()}
        self.command_handlers = {t: inject(h) for t, h in command_handlers.items()}

    def handle(self, message):
        results = []
        self.queue = [message]
        while self.queue:
            message = self.queue.pop(0)
            if isinstance(message, model.Event):
                self.handle_event(message)
            elif isinstance(message, model.Command):
                results.append(self.handle_command(message))
            else:
                raise Exception(f"{message} was not an Event or Command")
        return [r for r in results if r is not None]

    def handle_event(self, event):
        for handler in self.event_handlers.get(type(event), []):
            try:
                handler(event)
                self.queue.extend(self.uow.collect_new_events())
            except Exception:
                logger.exception("Exception handling event %s", event)
                continue

    def handle_command(self, command):
        try:
            result = self.command_handlers[type(command)](command)
            self.queue.extend(self.uow.collect_new_events())
            return result
        except Exception:
            logger.exception("Exception handling command %s", command)
            raise
