"""A signup flow on pyee: the app's emitter, wrapped by ``pyee_bus`` unchanged (``app``), and a v2 listener."""
