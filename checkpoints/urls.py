"""Store URLs: moved to ``redis_connect.urls`` (shared with ``legacy_bus``); re-exported here.

Nothing in the project imports this module any more; it stays so that outside
code written against ``checkpoints.urls`` keeps working.
"""

from redis_connect.urls import *  # noqa: F403
from redis_connect.urls import SUPPORTED, __all__  # noqa: F401
