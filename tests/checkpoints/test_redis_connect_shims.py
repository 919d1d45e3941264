"""The old ``checkpoints.connection`` / ``checkpoints.urls`` modules still re-export ``redis_connect``."""

from __future__ import annotations

import checkpoints.connection
import checkpoints.urls
import redis_connect.connection
import redis_connect.urls


def test_the_checkpoints_shims_re_export_every_public_name_of_redis_connect() -> None:
    for shim, home in ((checkpoints.connection, redis_connect.connection), (checkpoints.urls, redis_connect.urls)):
        assert shim.__all__ == home.__all__
        assert all(getattr(shim, name) is getattr(home, name) for name in home.__all__)
    assert checkpoints.connection.UNREACHABLE is redis_connect.connection.UNREACHABLE
    assert checkpoints.urls.SUPPORTED is redis_connect.urls.SUPPORTED
