"""Redis connections: moved to ``redis_connect.connection`` (shared with ``legacy_bus``); re-exported here."""

from redis_connect.connection import *  # noqa: F403
from redis_connect.connection import UNREACHABLE, __all__  # noqa: F401
