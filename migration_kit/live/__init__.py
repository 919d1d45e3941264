"""Live traffic: the router, the tap, cutover, sagas, saga locks, shadow workers."""
