"""The ``migration-kit`` command line: finding the user's migration (``--app``) and the commands."""

from migration_kit.cli.main import entry, main

__all__ = ["entry", "main"]
