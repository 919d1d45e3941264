"""A warehouse allocation service in Cosmic Python's style, on its own handler-registry bus.

``model``: the domain (products, batches, order lines; commands and events);
``handlers``: the service layer; ``messagebus``: the app's own small
``MessageBus``; ``bootstrap``: wires them, on the app's bus or on
``legacy_bus.adapters.message_bus`` (one line differs); ``migration``: the
migration onto LangGraph and a v2 handler to try.
"""
