"""The migration's store: one URL for everything a migration keeps.

``memory://`` (the API's default), ``sqlite:///path`` (the CLI's default: an
embedded file in the working directory, so commands see each other's state)
or ``redis://host:port/db``. Today it holds the candidate's checkpoints; the
phase, results, streams and replay progress live beside them.
"""

from __future__ import annotations

import threading
from typing import Any

from checkpoints.urls import mask_url, scheme_of

from migration_errors import ConfigurationError

__all__ = ["API_DEFAULT_STORE", "CLI_DEFAULT_STORE", "Store"]

API_DEFAULT_STORE = "memory://"
CLI_DEFAULT_STORE = "sqlite:///migration-kit.sqlite"
_SCHEMES = ("memory", "sqlite", "redis", "rediss")


class Store:
    """Opens what a migration keeps at ``url``, lazily, once."""

    def __init__(self, url: str | None = None) -> None:
        url = url or API_DEFAULT_STORE
        if not isinstance(url, str):
            raise ConfigurationError(f"a store is a URL string, not {type(url).__name__}")
        scheme = scheme_of(url)
        if scheme not in _SCHEMES:
            raise ConfigurationError(
                f"unsupported store URL {mask_url(url)!r}: use memory://, sqlite:///path or redis://host:port/db"
            )
        self.url = url
        self.scheme = scheme
        self._checkpointer: Any = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"Store({mask_url(self.url)!r})"

    @property
    def display_url(self) -> str:
        """The URL with any password masked."""
        return mask_url(self.url)

    @property
    def checkpointer(self) -> Any:
        """The LangGraph checkpoint saver on this store (opened on first use)."""
        if self._checkpointer is None:
            with self._lock:
                if self._checkpointer is None:
                    from checkpoints import open_checkpointer

                    self._checkpointer = open_checkpointer(self.url)
        return self._checkpointer

    def close(self) -> None:
        cp, self._checkpointer = self._checkpointer, None
        close = getattr(cp, "close", None)
        if callable(close):
            close()
