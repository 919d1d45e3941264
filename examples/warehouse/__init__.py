"""A warehouse allocation service in Cosmic Python's style, on its own handler-registry bus, its state in SQL.

``model``: the domain (products, batches, order lines; commands and events),
no SQLAlchemy in it; ``orm``: the tables and the imperative mapping;
``unit_of_work``: the SQLAlchemy repository and unit of work; ``handlers``:
the service layer and the read model; ``messagebus``: the app's own small
``MessageBus``; ``bootstrap``: wires them on a SQLite file (or
``$WAREHOUSE_DB_URL``), on the app's bus or on
``legacy_bus.adapters.message_bus`` with the database declared;
``migration``: the migration onto LangGraph and v2 handlers to try.
"""
