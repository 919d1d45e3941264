"""Redis connections: moved to ``redis_connect.connection`` (shared with ``legacy_bus``); re-exported here.

Nothing in the project imports this module any more; it stays so that outside
code written against ``checkpoints.connection`` keeps working.
"""

from redis_connect.connection import *  # noqa: F403
from redis_connect.connection import UNREACHABLE, __all__  # noqa: F401
