"""The ``migration-kit`` command line.

Exit codes: 0 when the decision lets the migration go on (``continue`` or
``promote``; before a policy exists: no divergence), 1 when it does not
(``hold`` or ``rollback``; before a policy: any divergence), 2 on usage or
input errors, which print one line to stderr and no traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from migration_errors import MigrationKitError

__all__ = ["main"]

EXIT_OK, EXIT_DIVERGED, EXIT_USAGE = 0, 1, 2


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2, as argparse does, but with our prefix
        self.exit(EXIT_USAGE, f"migration-kit: error: {message} (see migration-kit {self.prog.split()[-1]} --help)\n")


def _parser() -> argparse.ArgumentParser:
    p = _Parser(prog="migration-kit", description="Move an event-bus system onto LangGraph, safely.")
    p.add_argument("--debug", action="store_true", help="show tracebacks of unexpected errors")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    def app_args(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--app", required=True, metavar="MODULE:ATTR", help="the Migration (or a factory of one), e.g. examples.orders.app:migration")
        sp.add_argument("--store", metavar="URL", help="store URL (default: the app's, else sqlite:///migration-kit.sqlite in this directory)")

    r = sub.add_parser("replay", help="replay a recorded event log through both paths and compare them")
    r.add_argument("log", metavar="LOG", help="JSON Lines event log")
    app_args(r)
    r.add_argument("--json", metavar="OUT", help="write the report as JSON")
    r.add_argument("--html", metavar="OUT", help="write the report as a self-contained HTML page")
    r.add_argument("--skip-bad", action="store_true", help="skip unreadable lines (listed in the report) instead of stopping")

    g = sub.add_parser("graph", help="print the derived graph as Mermaid")
    app_args(g)
    return p


def _load(args: argparse.Namespace):  # noqa: ANN202
    from migration_kit.app import load_app
    from migration_kit.store import CLI_DEFAULT_STORE

    return load_app(args.app, store=args.store, default_store=CLI_DEFAULT_STORE)


def _check_writable(path: str | None, flag: str) -> None:
    if path is None:
        return
    parent = Path(path).resolve().parent
    if not parent.is_dir():
        raise MigrationKitError(f"{flag} {path}: the directory {parent} does not exist")
    if not os.access(parent, os.W_OK):
        raise MigrationKitError(f"{flag} {path}: the directory {parent} is not writable")


def cmd_replay(args: argparse.Namespace) -> int:
    from migration_kit.console import print_replay

    _check_writable(args.json, "--json")
    _check_writable(args.html, "--html")
    if not Path(args.log).is_file():
        raise MigrationKitError(f"event log {args.log} does not exist or is not a file")
    migration = _load(args)
    with migration:
        report = migration.replay(args.log, skip_bad=args.skip_bad)
    print_replay(report)
    if args.json:
        report.write_json(args.json)
    if args.html:
        report.write_html(args.html)
    return EXIT_OK if report.decision.ok else EXIT_DIVERGED


def cmd_graph(args: argparse.Namespace) -> int:
    migration = _load(args)
    flow = migration.flow
    if flow is not None:
        sys.stdout.write(flow.to_mermaid())
    else:
        sys.stdout.write(migration.candidate.get_graph().draw_mermaid())
    return EXIT_OK


COMMANDS = {"replay": cmd_replay, "graph": cmd_graph}


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit code (the console script exits with it)."""
    args = _parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except MigrationKitError as exc:
        print(f"migration-kit: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("migration-kit: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        if args.debug:
            raise
        print(f"migration-kit: unexpected error: {type(exc).__name__}: {exc} (run with --debug for the traceback)", file=sys.stderr)
        return EXIT_USAGE


def entry() -> None:
    sys.exit(main())
