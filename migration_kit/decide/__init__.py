"""From evidence to decisions: statistics, evidence, latency, policy, decisions, phases."""
