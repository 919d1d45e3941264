"""Redis URLs and connections shared by every package that talks to Redis.

``redis://`` / ``rediss://`` URLs with ACL credentials and TLS options (from the
URL or ``MIGRATION_KIT_REDIS_*``), masked for every message (``urls``), and
one ``connect`` / ``aconnect`` that detects Redis Cluster and turns a refused
or unreachable server into ``StoreUnavailable`` naming the masked URL and
what to check (``connection``). It depends only on redis-py and
``migration_errors``, so ``legacy_bus`` (saga state in Redis) and
``checkpoints`` both use it without knowing about each other.
"""
