"""The ``migration-kit`` command line.

Exit codes: 0 when the decision lets the migration go on (``continue`` or
``promote``), 1 when it does not (``hold`` or ``rollback``; the default
policy holds on any divergence, as parity did before policies existed), 2 on
usage or input errors, an invalid phase transition or a phase conflict,
which print one line to stderr and no traceback.

Output is redacted: reports and status are masked by the app's redactor
(``migration_kit.observe.redaction``), and everything else the CLI writes to stdout
and stderr (messages, errors, worker logs) passes a line filter that masks
card numbers.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from migration_errors import ConfigurationError, MigrationKitError
from redis_connect.urls import mask_url

from migration_kit.run.resume import STORE_ERRORS
from migration_kit.observe.safe_text import one_line, terminal

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
    r.add_argument(
        "--save-every", "--checkpoint-every", dest="save_every", type=int, default=100, metavar="N",
        help="save resumable progress every N events (with --workers: of each partition; default 100)",
    )
    r.add_argument("--workers", type=int, metavar="N", help="split the log by saga across N worker processes (`worker --replay` elsewhere can join)")
    r.add_argument("--partitions", type=int, default=64, metavar="P", help="with --workers: partitions of the log (default 64)")
    r.add_argument("--lease-ttl", type=float, default=30.0, metavar="S", help="with --workers: seconds before a silent worker's partitions are reclaimed (default 30)")

    rs = sub.add_parser("resume", help="continue the last unfinished replay (after Ctrl-C, a crash or kill -9)")
    rs.add_argument("log", metavar="LOG", nargs="?", help="the log whose replay to continue (from the start when nothing was saved)")
    app_args(rs)
    rs.add_argument("--json", metavar="OUT", help="write the report as JSON")
    rs.add_argument("--html", metavar="OUT", help="write the report as a self-contained HTML page")
    rs.add_argument("--skip-bad", action="store_true", help="skip unreadable lines instead of stopping")
    rs.add_argument("--save-every", type=int, default=100, metavar="N", help="save resumable progress every N events (default 100)")
    rs.add_argument("--workers", type=int, metavar="N", help="a distributed replay: fork N workers (default: as many as before)")

    rc = sub.add_parser("record", help="export tapped live traffic (with its real effect responses) to a JSON Lines log")
    app_args(rc)
    rc.add_argument("--out", required=True, metavar="LOG", help="the log to write (refused if it exists, unless --append)")
    rc.add_argument("--follow", action="store_true", help="keep waiting for new traffic until Ctrl-C or SIGTERM")
    rc.add_argument("--append", action="store_true", help="add to an existing log")
    rc.add_argument("--max-events", type=int, metavar="N", help="stop after N events")

    rp = sub.add_parser("report", help="render a saved JSON report (from replay --json) as HTML")
    rp.add_argument("report", metavar="REPORT_JSON")
    rp.add_argument("--html", required=True, metavar="OUT", help="where to write the HTML page")

    g = sub.add_parser("graph", help="print the derived graph as Mermaid")
    app_args(g)

    st = sub.add_parser("status", help="the phase, the evidence, the policy's decision and the history")
    app_args(st)
    st.add_argument("--json", action="store_true", help="print one JSON object instead of a table")

    pr = sub.add_parser("promote", help="move to the next phase (or canary step), or forward to --to / --percent")
    app_args(pr)
    pr.add_argument("--to", choices=["shadow", "canary", "primary", "retired"], help="the phase to move forward to")
    pr.add_argument("--percent", type=float, metavar="N", help="the canary percentage (0 < N < 100)")
    pr.add_argument("--reason", metavar="TEXT", help="why, for the audit history")

    rb = sub.add_parser("rollback", help="send all traffic back to the legacy path")
    app_args(rb)
    rb.add_argument("--reason", required=True, metavar="TEXT", help="why, for the audit history")

    w = sub.add_parser("worker", help="compare live shadow traffic from the Redis Stream (a consumer-group worker)")
    app_args(w)
    w.add_argument("--concurrency", type=int, default=1, metavar="N", help="entries compared at once, in threads (default 1)")
    w.add_argument("--consumer", metavar="NAME", help="this worker's name in the consumer group (default: <host>-<pid>)")
    w.add_argument("--block-ms", type=int, default=1000, metavar="MS", help="how long one read waits for new entries (default 1000)")
    w.add_argument("--claim-idle-ms", type=int, default=30_000, metavar="MS", help="reclaim entries pending longer than this from dead workers (default 30000)")
    w.add_argument("--trim", action="store_true", help="delete each entry once recorded (the stream holds only what is left to compare; `record` then misses them)")
    w.add_argument("--max-events", type=int, metavar="N", help="stop after handling N entries (for tests)")
    w.add_argument("--cpus", metavar="LIST", help="pin the worker to these CPUs, e.g. 0 or 0,1 or 2-3 (one worker per core scales best)")
    w.add_argument("--replay", action="store_true", help="join the store's distributed replay (`replay LOG --workers N`) instead of the shadow stream")
    w.add_argument("--log", metavar="PATH", help="with --replay: where this machine has the replayed log (default: the coordinator's path)")
    w.add_argument("--wait", type=float, default=60.0, metavar="S", help="with --replay: how long to wait for a replay to join (default 60)")
    return p


def _load(args: argparse.Namespace):  # noqa: ANN202
    from migration_kit.cli.app import load_app
    from migration_kit.store import CLI_DEFAULT_STORE

    return load_app(args.app, store=args.store, default_store=CLI_DEFAULT_STORE)


class _MaskedStream:
    """A text stream that masks card numbers line by line before they reach ``inner``."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self._buf = ""
        self._lock = threading.Lock()  # worker threads log through it too

    def _mask(self, text: str) -> str:
        from migration_kit.observe.redaction import default_redactor

        # The last filter before the terminal: no raw control character or lone surrogate gets out.
        return terminal(default_redactor().text(text), tty=self._tty)

    @property
    def _tty(self) -> bool:
        try:
            return bool(self._inner.isatty())
        except (AttributeError, ValueError, OSError):
            return False

    def write(self, s: Any) -> int:
        if not isinstance(s, str):
            return self._inner.write(s)
        with self._lock:
            self._buf += s
            if "\n" in self._buf:  # whole lines only: a number is never split across two writes
                head, _, self._buf = self._buf.rpartition("\n")
                self._inner.write(self._mask(head + "\n"))
        return len(s)

    def flush(self) -> None:
        with self._lock:
            if self._buf:
                self._inner.write(self._mask(self._buf))
                self._buf = ""
        self._inner.flush()

    def write_unfiltered(self, s: str) -> int:
        """Write output already masked by structure (JSON): the line filter would mangle its numbers."""
        self.flush()
        return self._inner.write(s)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


def _check_writable(path: str | None, flag: str) -> None:
    if path is None:
        return
    parent = Path(path).resolve().parent
    if not parent.is_dir():
        raise MigrationKitError(f"{flag} {path}: the directory {parent} does not exist")
    if not os.access(parent, os.W_OK):
        raise MigrationKitError(f"{flag} {path}: the directory {parent} is not writable")


def _same_file(a: str, b: str) -> bool:
    """Whether two paths name one file (symlinks and hard links resolved)."""
    try:
        if os.path.exists(a) and os.path.exists(b):
            return os.path.samefile(a, b)
    except OSError:
        pass
    return os.path.realpath(a) == os.path.realpath(b)


def _refuse_overwrite(outputs: dict[str, str | None], inputs: dict[str, str | None]) -> None:
    """Refuse an output path that is an input (the log, the store, another output) before anything runs."""
    named = [(flag, out) for flag, out in outputs.items() if out]
    for i, (flag, out) in enumerate(named):
        for what, path in [*inputs.items(), *((f"the {f} output", o) for f, o in named[:i])]:
            if path and _same_file(out, path):
                raise MigrationKitError(f"{flag} {one_line(out)} is {what} ({one_line(path)}): refusing to overwrite it; write the report elsewhere")


def _store_file(migration: Any) -> str | None:
    if migration.store.scheme != "sqlite":
        return None
    from redis_connect.urls import sqlite_path

    return sqlite_path(migration.store.url)


def _outputs(args: argparse.Namespace) -> dict[str, str | None]:
    return {"--json": getattr(args, "json", None), "--html": getattr(args, "html", None)}


def cmd_replay(args: argparse.Namespace) -> int:
    """``replay LOG``: replay an event log through both paths and print (and write) the report."""
    if args.save_every < 1:
        raise MigrationKitError(f"--save-every {args.save_every}: give a number of events >= 1")
    _check_writable(args.json, "--json")
    _check_writable(args.html, "--html")
    if not Path(args.log).is_file():
        raise MigrationKitError(f"event log {one_line(args.log)} does not exist or is not a file")
    _refuse_overwrite(_outputs(args), {"the event log": args.log})
    return _run_replay(args, args.log, resume=False)


def cmd_resume(args: argparse.Namespace) -> int:
    """``resume``: continue the unfinished replay of a log from its last saved point."""
    _check_writable(args.json, "--json")
    _check_writable(args.html, "--html")
    if args.log is not None and not Path(args.log).is_file():
        raise MigrationKitError(f"event log {one_line(args.log)} does not exist or is not a file")
    migration = _load(args)
    path = migration.unfinished_replay(args.log)
    if path is None and args.log is not None and not migration.replayed(args.log):
        print(f"migration-kit: no progress saved for {one_line(args.log)}: replaying it from the start", file=sys.stderr)
        path = args.log
    if path is None:
        migration.close()
        of = f" of {one_line(args.log)}" if args.log else ""
        raise MigrationKitError(f"nothing to resume: migration {one_line(migration.name)!r} has no unfinished replay{of} in {migration.store.display_url}")
    print(f"resuming the replay of {one_line(path)}", file=sys.stderr)
    return _run_replay(args, path, resume=True, migration=migration)


def _resume_command(args: argparse.Namespace, log: str, migration: Any) -> str:
    import shlex

    store = f" --store {shlex.quote(migration.store.display_url)}" if args.store else ""
    skip = " --skip-bad" if getattr(args, "skip_bad", False) else ""  # resumed as it was started
    return f"migration-kit resume {shlex.quote(str(log))} --app {shlex.quote(args.app)}{store}{skip}"


def _silence_stdout() -> None:
    """The reader of stdout went away (``| head``): send the rest of the output nowhere."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.__stdout__.fileno())
    except (OSError, AttributeError, ValueError):
        pass


def _run_replay(args: argparse.Namespace, log: str, *, resume: bool, migration: Any = None) -> int:
    from migration_kit.report.console import print_replay
    from migration_kit.report.progress import ReplayProgress, count_lines
    from migration_kit.run.resume import ReplayInterrupted
    from migration_kit.run.sandbox_logs import CapturedLogs

    import signal
    import threading

    workers = getattr(args, "workers", None)
    if workers is not None and workers < 0:  # a usage error: refused before anything runs
        raise ConfigurationError(f"replay(workers={workers}): give a number of worker processes (0 or more)")
    migration = migration or _load(args)
    try:
        _refuse_overwrite(_outputs(args), {"the event log": log, "the store": _store_file(migration)})
        migration.replay_started(log)  # so `resume` finds it even if this process dies before its first save
    except BaseException:  # re-raised: the store is closed on the way out
        migration.close()
        raise
    stop = threading.Event()

    def interrupted(_sig: int, _frame: Any) -> None:
        # The first Ctrl-C stops after the event in hand, with progress saved;
        # a second one interrupts at once.
        stop.set()
        signal.signal(signal.SIGINT, signal.default_int_handler)

    previous = signal.signal(signal.SIGINT, interrupted)
    logs = CapturedLogs()
    try:
        every = 1.0 if getattr(args, "workers", None) is not None else 5.0  # lines across workers each second
        with migration, logs, ReplayProgress(count_lines(log), stream=sys.stderr, interval=every) as progress:
            print(f"migration-kit: replaying {one_line(log)}", file=sys.stderr, flush=True)  # a line to wait on
            spread = {"workers": args.workers} if getattr(args, "workers", None) is not None else {}
            if spread and hasattr(args, "partitions"):
                spread.update(partitions=args.partitions, lease_ttl=args.lease_ttl)
            report = migration.replay(
                log, skip_bad=args.skip_bad, resume=resume, on_result=progress.update, stop=stop,
                checkpoint_every=args.save_every, **spread,
            )
    except ReplayInterrupted as exc:
        _print_logs(logs)
        print(f"migration-kit: {one_line(exc)}", file=sys.stderr)
        print(f"migration-kit: to continue: {_resume_command(args, log, migration)}", file=sys.stderr)
        return 130
    except STORE_ERRORS as exc:
        _print_logs(logs)
        print(
            f"migration-kit: error: the replay of {one_line(log)} stopped: the store {migration.store.display_url} failed "
            f"({type(exc).__name__}: {one_line(exc)[:300]}); progress up to its last save is kept; "
            f"once the store works again, continue with: {_resume_command(args, log, migration)}",
            file=sys.stderr,
        )
        return EXIT_USAGE
    finally:
        signal.signal(signal.SIGINT, previous)
    _print_logs(logs)
    # The reports first: a reader of stdout that goes away (`| head`) must not lose them.
    if args.json:
        report.write_json(args.json)
    if args.html:
        report.write_html(args.html)
    try:
        print_replay(report, redactor=migration.redactor)
        sys.stdout.flush()
    except BrokenPipeError:
        _silence_stdout()
    return EXIT_OK if report.decision.ok else EXIT_DIVERGED


def _print_logs(logs: Any) -> None:
    if logs.total:
        print(f"migration-kit: the app logged {logs.total:,} records during sandboxed runs (summarized, not shown):", file=sys.stderr)
        for line in logs.summary():
            print(f"  {line}", file=sys.stderr)


def cmd_record(args: argparse.Namespace) -> int:
    """``record``: write the shadow stream's entries to a JSONL event log, masked."""
    from migration_kit.run.record import record_stream

    migration = _load(args)
    with migration:
        counts = record_stream(migration, args.out, follow=args.follow, append=args.append, max_events=args.max_events)
    bad = f", {counts['bad']:,} malformed entries skipped" if counts["bad"] else ""
    print(f"recorded {counts['written']:,} events to {args.out}{bad}", file=sys.stderr)
    return EXIT_OK


def cmd_report(args: argparse.Namespace) -> int:
    """``report``: render a saved JSON report as HTML, masked with the built-in rules (no app is loaded)."""
    import json

    from migration_kit.observe.redaction import default_redactor
    from migration_kit.observe.safe_text import for_file
    from migration_kit.report.html import render_report

    _check_writable(args.html, "--html")
    _refuse_overwrite({"--html": args.html}, {"the JSON report": args.report})
    try:
        data = json.loads(Path(args.report).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise MigrationKitError(f"report {args.report} does not exist") from None
    except (OSError, ValueError) as exc:
        raise MigrationKitError(f"report {args.report} is not a JSON report from `replay --json` ({exc})") from None
    if not isinstance(data, dict) or "decision" not in data:
        raise MigrationKitError(f"report {args.report} is not a JSON report from `replay --json` (no decision)")
    # The JSON was masked by its migration's rules when written; no app is loaded here: card numbers only.
    Path(args.html).write_text(for_file(render_report(data, redactor=default_redactor())), encoding="utf-8")
    return EXIT_OK


def cmd_graph(args: argparse.Namespace) -> int:
    """``graph``: print the candidate graph as Mermaid."""
    migration = _load(args)
    flow = migration.flow
    if flow is not None:
        sys.stdout.write(flow.to_mermaid())
    else:
        sys.stdout.write(migration.candidate.get_graph().draw_mermaid())
    return EXIT_OK


def cmd_status(args: argparse.Namespace) -> int:
    """``status``: print where the migration stands (phase, counts, decision, history), masked."""
    import json

    with _load(args) as migration:
        status = migration.redactor.value(migration.status())
    if args.json:
        # Masked by structure above; the text filter could take a float's digits for a card number.
        text = json.dumps(status, indent=2, default=str) + "\n"
        getattr(sys.stdout, "write_unfiltered", sys.stdout.write)(text)
    else:
        print_status(status)
    return EXIT_OK


def cmd_promote(args: argparse.Namespace) -> int:
    """``promote``: move the migration to its next phase (or ``--to`` one) and print the transition."""
    with _load(args) as migration:
        t = migration.promote(to=args.to, percent=args.percent, reason=args.reason)
    print(f"{migration.name}: {t.from_state.describe()} -> {t.to_state.describe()} (attempt {t.to_state.attempt})")
    return EXIT_OK


def cmd_rollback(args: argparse.Namespace) -> int:
    """``rollback``: send every event back to the legacy path and print the transition."""
    with _load(args) as migration:
        t = migration.rollback(args.reason)
    print(f"{migration.name}: {t.from_state.describe()} -> rolled_back: {args.reason}")
    return EXIT_OK


def pin_cpus(spec: str) -> set[int]:
    """Pin this process to the CPUs in ``spec`` (``0``, ``0,2``, ``1-3``); returns them.

    Raises:
        ConfigurationError: the list is malformed, or names a CPU this machine does not offer.
    """
    cpus: set[int] = set()
    for part in spec.split(","):
        m = re.fullmatch(r"\s*(\d+)(?:-(\d+))?\s*", part)
        if m is None:
            raise ConfigurationError(f"--cpus {spec!r}: expected CPU numbers like 0 or 0,1 or 2-3")
        cpus.update(range(int(m[1]), int(m[2] or m[1]) + 1))
    offered = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else set(range(os.cpu_count() or 1))
    if not cpus or not cpus <= offered:
        raise ConfigurationError(f"--cpus {spec!r}: this machine offers CPUs {sorted(offered)}")
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, cpus)
    return cpus


def cmd_worker(args: argparse.Namespace) -> int:
    """``worker``: run a shadow worker on the store's stream (or join a distributed replay) until stopped."""
    import logging

    if args.replay:
        return _join_replay(args)
    if not args.store:
        raise MigrationKitError("worker: --store redis://host:port/db is required (the shadow stream and the results live in Redis)")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.cpus:
        pin_cpus(args.cpus)  # before any thread starts: they all inherit it
    with _load(args) as migration:
        worker = migration.worker(
            concurrency=args.concurrency,
            consumer=args.consumer,
            block_ms=args.block_ms,
            claim_idle_ms=args.claim_idle_ms,
            max_events=args.max_events,
            trim=args.trim,
        )
        with _on_stop_signals(worker.stop):  # drain what is in flight, then exit 0
            stats = worker.run()
    print(f"{migration.name}: worker {worker.consumer} stopped: " + ", ".join(f"{k} {v:,}" for k, v in stats.to_dict().items()))
    return EXIT_OK


@contextlib.contextmanager
def _on_stop_signals(stop: Callable[[], None]) -> Iterator[None]:
    """SIGTERM and SIGINT call ``stop`` while the block runs; the handlers found are put back after
    (``main`` may be called in-process, by a test or an embedding program)."""
    import signal

    previous = {sig: signal.signal(sig, lambda *_: stop()) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _join_replay(args: argparse.Namespace) -> int:
    import threading

    from migration_kit.run.distributed import join_replay

    if args.cpus:
        pin_cpus(args.cpus)
    stop = threading.Event()
    with _on_stop_signals(stop.set), _load(args) as migration:  # save this worker's partitions, release them, exit 0
        n = join_replay(migration.replayer, name=args.consumer, log=args.log, wait=args.wait, stop=stop)
    print(f"{migration.name}: replay worker stopped: compared {n:,} events", file=sys.stderr)
    return EXIT_OK


def print_status(status: dict[str, Any], *, history: int = 10) -> None:
    """Print a migration's status: phase, counts, latency, the decision and recent history."""
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    from migration_kit.observe.safe_text import one_line, text

    console = Console(highlight=False, soft_wrap=True)
    # Every value from the store goes in as Text (never parsed as markup), on one line.
    phase = one_line(status["phase"]) + (f" {status['percent']:g}%" if status.get("percent") is not None else "")
    table = Table(title=text(f"{status['migration']} ({status['store']})"), show_header=False)
    table.add_column("what", style="bold")
    table.add_column("value")
    table.add_row("phase", text(f"{phase} (attempt {status.get('attempt', 1)}, since {status.get('since') or 'the start'})"))
    for key in ("compared", "divergent", "errors", "pending", "shed"):
        table.add_row(key, f"{status[key]:,}")
    ev = status.get("evidence") or {}
    div = ev.get("divergence") or {}
    if div.get("rate") is not None:
        lo, hi = div["anytime_bounds"]
        table.add_row("divergence", f"{div['rate']:.2%} (anytime {ev['confidence']:.0%}: {lo:.2%} to {hi:.2%})")
    for path, q in (ev.get("latency") or {}).items():
        if q.get("n"):
            table.add_row(text(f"{path} latency"), f"p50 {q['p50_ms']:.2f} ms, p95 {q['p95_ms']:.2f} ms, p99 {q['p99_ms']:.2f} ms")
    d = status["decision"]
    style = "bold green" if d["action"] in ("continue", "promote") else "bold red"
    table.add_row("decision", text(str(d["action"]).upper(), style))
    console.print(table)
    for reason in d["reasons"]:
        console.print(Text.assemble("  - ", text(reason)))
    if status.get("history"):
        console.print("history:")
        for h in status["history"][-history:]:
            to = f"{h['to']}" + (f" {h['percent']:g}%" if h.get("percent") is not None else "")
            console.print(text(f"  {h['at']}  {h['from']} -> {to}  by {h['by']}" + (f": {h['reason']}" if h.get("reason") else "")))


COMMANDS = {"replay": cmd_replay, "resume": cmd_resume, "record": cmd_record, "report": cmd_report, "graph": cmd_graph, "status": cmd_status, "promote": cmd_promote, "rollback": cmd_rollback, "worker": cmd_worker}


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit code (the console script exits with it)."""
    out, err = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = _MaskedStream(out), _MaskedStream(err)
    try:
        return _main(argv)
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):  # noqa: S110 - a closed stream or a broken pipe: nothing more to write
                pass
        sys.stdout, sys.stderr = out, err


def _main(argv: Sequence[str] | None) -> int:
    args = _parser().parse_args(argv)
    if getattr(args, "store", None) is not None and not args.store.strip():
        print(f"migration-kit: error: --store is empty: give a store URL (sqlite:///path, redis://host:port/db) or leave the flag out (see migration-kit {args.command} --help)", file=sys.stderr)
        return EXIT_USAGE
    try:
        from migration_kit.observe.telemetry import configure_from_env

        configure_from_env()
        return COMMANDS[args.command](args)
    except MigrationKitError as exc:
        print(f"migration-kit: error: {one_line(exc)}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("migration-kit: interrupted", file=sys.stderr)
        return 130
    except STORE_ERRORS as exc:  # the store (Redis, SQLite) failed outside a replay's own handling
        store = getattr(args, "store", None)
        where = f" {mask_url(store)}" if store else ""
        print(
            f"migration-kit: error: the store{where} failed ({type(exc).__name__}: {one_line(exc)[:300]}); "
            "check that it is up, reachable and really the store (--store)",
            file=sys.stderr,
        )
        return EXIT_USAGE
    except Exception as exc:  # translated: one escaped line and exit 2 (the traceback with --debug)
        if args.debug:
            raise
        print(f"migration-kit: unexpected error: {type(exc).__name__}: {one_line(exc)[:500]} (run with --debug for the traceback)", file=sys.stderr)
        return EXIT_USAGE


def entry() -> None:
    """The console script: run ``main()`` on ``sys.argv`` and exit with its code."""
    sys.exit(main())
