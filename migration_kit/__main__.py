"""``python -m migration_kit`` runs the CLI."""

from migration_kit.cli import entry

entry()
