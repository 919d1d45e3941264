"""What every bus offers besides dispatch (``EventBus`` and the adapters): effect ports, declared databases, a read of saga state."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

from migration_errors import ConfigurationError

from legacy_bus.database import DatabasesMixin
from legacy_bus.effects import EffectPort
from legacy_bus.state import StateStore

__all__ = ["PortsMixin"]


class PortsMixin(DatabasesMixin):
    """``effect`` / ``ports`` / ``database`` / ``state_for``, written once for every bus (needs ``name``, ``_ports``, ``state_store``)."""

    name: str
    state_store: StateStore
    _ports: dict[str, EffectPort]

    @property
    def ports(self) -> dict[str, EffectPort]:
        """The effect ports declared on this bus."""
        return dict(self._ports)

    def effect(self, name: str, stub: Any = None) -> Callable[[Callable[..., Any]], EffectPort]:
        """Mark a function as a side-effect port (payment, e-mail, HTTP, DB write).

        Handlers call the returned port exactly as they called the function.
        ``stub`` answers sandboxed calls that have no recorded response: a
        value (copied) or a callable taking the call's arguments.
        """

        def decorate(fn: Callable[..., Any]) -> EffectPort:
            if name in self._ports:
                raise ConfigurationError(f"an effect port named {name!r} is already declared on bus {self.name!r}")
            port = EffectPort(name, fn, stub)
            self._ports[name] = port
            return port

        return decorate

    def state_for(self, correlation_id: str) -> dict[str, Any]:
        """A copy of the saga state kept for ``correlation_id`` (empty when none)."""
        state = self.state_store.peek(correlation_id)
        return copy.deepcopy(state) if state else {}
