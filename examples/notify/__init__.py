"""A notification flow on blinker signals, wrapped by ``blinker_bus`` unchanged (``app``)."""
