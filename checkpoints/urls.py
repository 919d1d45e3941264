"""Store URLs: moved to ``redis_connect.urls`` (shared with ``legacy_bus``); re-exported here."""

from redis_connect.urls import *  # noqa: F403
from redis_connect.urls import SUPPORTED, __all__  # noqa: F401
