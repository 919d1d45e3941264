"""Cross-cutting concerns: telemetry, redaction, safe text, the machinery-failure hook."""
