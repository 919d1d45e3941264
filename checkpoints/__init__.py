"""LangGraph checkpoint savers: plain Redis (standalone or Cluster), and opening any store by URL.

``RedisSaver`` / ``AsyncRedisSaver`` keep graph state in Redis with one round
trip per ``put``, ``put_writes`` and ``get_tuple``; ``open_checkpointer(url)``
opens ``memory://``, ``sqlite:///path`` or ``redis://host:port/db`` and returns
a saver with ``close()``.
"""

from __future__ import annotations

from checkpoints.aio import AsyncRedisSaver
from checkpoints.factory import open_checkpointer
from checkpoints.redis_saver import RedisSaver
from migration_errors import ConfigurationError, StoreUnavailable

__all__ = [
    "AsyncRedisSaver",
    "ConfigurationError",
    "RedisSaver",
    "StoreUnavailable",
    "open_checkpointer",
]
