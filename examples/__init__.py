"""Example applications that migration-kit's README, demo, tests and benchmarks use."""
