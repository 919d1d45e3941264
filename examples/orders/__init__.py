"""The orders service: a legacy order-processing system on an in-process event bus.

``examples.orders.app`` is the system as it runs in production, ``examples.orders.v2``
the same system with the shipping handler rewritten as a native LangGraph node,
and ``examples.orders.generate`` writes a recorded log of storefront traffic.
"""
