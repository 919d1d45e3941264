"""Replay: a recorded log through both paths, streamed, resumable, on one process or many.

``Replayer`` runs a log's events through the executor on the replay's own saga
state (each path separately), tallies the comparisons into a report, saves its
progress (``migration_kit.run.resume``) and the evidence as it goes, and at the
end lets the policy decide. ``workers=N`` hands the log to
``migration_kit.run.distributed``, which sees the same narrow interface a
partition worker needs (``replay_step``, ``legacy_step``, ``seal``, ...).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from time import perf_counter
from typing import Any

from legacy_bus import Event, EventLog, LogEntry, SkippedLine
from legacy_bus.copying import deep_copy
from legacy_bus.protocol import LegacyBus
from migration_errors import BadEventLog, ConfigurationError

from migration_kit import keys
from migration_kit.compare.comparator import Comparator, Comparison
from migration_kit.compare.noise import NoiseBook, NoiseModel
from migration_kit.decide.decision import Decision
from migration_kit.decide.evidence import EvidenceStore
from migration_kit.decide.phases import PhaseControl, PhaseState
from migration_kit.decide.policy import Monitor, Policy
from migration_kit.report.report import ReplayReport, ReplayTally
from migration_kit.run.candidate import CandidateGraph
from migration_kit.run.executor import Executor
from migration_kit.run.resume import LogIdentity, ReplayInterrupted, progress_key, store_failed
from migration_kit.run.saga_pages import PagedStates
from migration_kit.store import Store

__all__ = ["SAVE_EVIDENCE_EVERY", "Replayer", "Source", "drawable_limits"]

SAVE_EVIDENCE_EVERY = 1000  # events between saves of a running replay's evidence (status sees progress)

Source = str | Path | EventLog | Iterable[Event | LogEntry | dict[str, Any]]


class Replayer:
    """Replays logs for one migration: the parts a replay needs, handed in by the facade.

    Args:
        name: the migration's name.
        store: the migration's store (progress, saga pages, evidence).
        executor: runs each event through both paths.
        phases: the phase (a replay's evidence belongs to the current attempt; the policy acts on it).
        evidence: where the replay's evidence is saved.
        noise: learned noise (saved with the progress, and at the end).
        policy: the decision policy.
        redactor: masks what the report shows.
        saga_capacity: how many sagas' scratch state a replay keeps in memory.
    """

    def __init__(
        self,
        name: str,
        *,
        store: Store,
        executor: Executor,
        phases: PhaseControl,
        evidence: EvidenceStore,
        noise: NoiseBook,
        policy: Policy,
        redactor: Any,
        saga_capacity: int,
    ) -> None:
        self.name = name
        self.store = store
        self.executor = executor
        self.phases = phases
        self.evidence = evidence
        self.noise_book = noise
        self.policy = policy
        self.redactor = redactor
        self.saga_capacity = saga_capacity

    # -- what a partition worker (migration_kit.run.distributed) reads --------------------------

    @property
    def legacy(self) -> LegacyBus:
        """The team's bus."""
        return self.executor.legacy

    @property
    def candidate(self) -> CandidateGraph:
        """The candidate graph."""
        return self.executor.candidate

    @property
    def graph(self) -> Any:
        """The compiled candidate graph."""
        return self.executor.candidate.graph

    @property
    def comparator(self) -> Comparator:
        """The comparator."""
        return self.executor.comparator

    @property
    def noise(self) -> NoiseModel:
        """The noise learned so far."""
        return self.noise_book.model

    def replay_step(self, *args: Any, **kwargs: Any) -> Comparison:
        """``Executor.replay_step``."""
        return self.executor.replay_step(*args, **kwargs)

    def legacy_step(self, *args: Any, **kwargs: Any) -> Any:
        """``Executor.legacy_step``."""
        return self.executor.legacy_step(*args, **kwargs)

    def seal(self, value: Any) -> dict[str, str]:
        """Saga state made ready for the store's records (encrypted at rest when checkpoints are)."""
        return self.store.seal(value)

    def unseal(self, doc: Any) -> Any:
        """What ``seal`` made, back."""
        return self.store.unseal(doc)

    def reopen_store(self) -> None:
        """Open the store anew in a forked process, leaving the inherited connections alone."""
        self.store.reopen()
        self.executor.candidate.reset()

    # -- replaying -------------------------------------------------------------------------

    def replay(
        self,
        events_or_path: Source,
        *,
        skip_bad: bool = False,
        resume: bool = False,
        on_result: Callable[[Comparison, ReplayTally], None] | None = None,
        checkpoint_every: int = 100,
        stop: Any = None,
        workers: int | None = None,
        **distributed: Any,
    ) -> ReplayReport:
        """Replay recorded events through both paths; returns the report (the public contract, with every
        option, is ``Migration.replay``'s: the facade delegates here)."""
        if workers is not None or (resume and isinstance(events_or_path, (str, Path)) and self._distributed_unfinished(events_or_path)):
            return self._replay_distributed(
                events_or_path, workers=workers, skip_bad=skip_bad, resume=resume, on_result=on_result,
                checkpoint_every=checkpoint_every, stop=stop, **distributed,
            )
        if distributed:
            raise TypeError(f"replay() got {', '.join(sorted(distributed))}: options of a replay across processes, which need workers=N")
        entries, source, skipped = self._entries(events_or_path, skip_bad)
        log = events_or_path if isinstance(events_or_path, EventLog) else (
            EventLog(events_or_path) if isinstance(events_or_path, (str, Path)) else None
        )
        tally = ReplayTally(redactor=self.redactor)
        state = self.phases.read()[0]
        monitor = Monitor(self.policy, phase=state.phase, percent=state.percent)
        legacy_states = PagedStates(self.saga_capacity, side="legacy")
        candidate_states = PagedStates(self.saga_capacity, side="candidate")
        identity = LogIdentity.start(log.path) if log is not None else None
        elapsed_before = 0.0
        suspect = 0  # events after a resume point whose graph thread may have been left behind
        if resume:
            if log is None:
                raise ConfigurationError("only a replay of a log file can resume: pass its path")
            saved = self._progress(log.path)
            if saved is not None and saved.get("status") != "done":
                identity = LogIdentity.from_dict(saved["log"])
                identity.verify()
                tally = ReplayTally.from_dict(saved["tally"])
                tally.redactor = self.redactor
                monitor.restore(saved.get("monitor"))
                for states in (legacy_states, candidate_states):
                    if f"{states.side}_pages" in saved:
                        states.restore_pages(self.store.records, progress_key(log.path), saved[f"{states.side}_pages"], self.store.unseal)
                    else:  # saved before pages existed
                        states.restore(self.store.unseal(saved.get(f"{states.side}_states")))
                self.noise_book.replace(NoiseModel.from_dict(saved.get("noise")))
                skipped.extend(SkippedLine(int(x["line"]), x["reason"]) for x in saved.get("skipped", []))
                elapsed_before = float(saved.get("elapsed", 0.0))
                entries = EventLog(log.path, on_error="skip" if skip_bad else "raise").entries(
                    start_offset=identity.offset, start_line=identity.line + 1
                )
                suspect = max(checkpoint_every, int(saved.get("every") or 0)) + 1  # the interrupted run's window too
        if identity is not None and suspect == 0:  # a fresh replay: an abandoned run's saga pages go
            abandoned = self._progress(identity.path) or {}
            for states in (legacy_states, candidate_states):
                states.drop_pages(self.store.records, progress_key(identity.path), abandoned.get(f"{states.side}_pages"))
        known = set(self.legacy.event_types)
        started = perf_counter()

        def save(status: str) -> None:
            if identity is None:
                return
            # Saga state goes in pages of its own; only the pages used since the last save are written.
            prefix, records = progress_key(identity.path), self.store.records
            pages = {f"{s.side}_pages": s.save_pages(records, prefix, self.store.seal) for s in (legacy_states, candidate_states)}
            self._save_progress(
                identity,
                {
                    "status": status,
                    "source": source,
                    "tally": tally.to_dict(),
                    "monitor": monitor.state(),
                    **pages,
                    "noise": self.noise.to_dict(),
                    "skipped": [{"line": x.line, "reason": x.reason} for x in skipped],
                    "elapsed": elapsed_before + perf_counter() - started,
                    "every": checkpoint_every,
                },
            )
            for s in (legacy_states, candidate_states):
                s.saved(records, prefix)
                if status == "done":  # a finished replay is never resumed: its saga pages go
                    s.drop_pages(records, prefix, pages[f"{s.side}_pages"])

        save("running")
        since = 0
        last: LogEntry | None = None
        try:
            for entry in entries:
                event = entry.event
                if event.type not in known:
                    reason = f"has event type {event.type!r}, which no handler of bus {self.legacy.name!r} subscribes to"
                    if not skip_bad:
                        raise BadEventLog(f"{source} line {entry.line} {reason}", line=entry.line, source=source)
                    skipped.append(SkippedLine(entry.line, reason))
                    last = entry
                    continue
                key = event.saga_key
                seed = candidate_states.peek(key)
                comparison, after = self.executor.compare(
                    event, entry.effects, legacy_states, deep_copy(seed) if seed else None, resume=suspect > 0
                )
                suspect = max(0, suspect - 1)
                store_failed(comparison.candidate, self.store.display_url)  # a dead store is not a candidate error
                candidate_states.save(key, after or {})
                tally.add(comparison, entry.line)
                last = entry
                monitor.observe(tally.evidence)
                if tally.total % SAVE_EVIDENCE_EVERY == 0:
                    self.evidence.save(source, tally.evidence, state.attempt)
                since += 1
                if identity is not None and since >= checkpoint_every:
                    identity.advance(entry.line, entry.end)
                    save("running")
                    since = 0
                if on_result is not None:
                    on_result(comparison, tally)
                if stop is not None and stop.is_set():
                    raise KeyboardInterrupt
        except KeyboardInterrupt:
            if identity is not None and last is not None:
                identity.advance(last.line, last.end)
            save("interrupted")
            self.noise_book.save()
            where = f"line {identity.line:,}" if identity is not None else "the start"
            raise ReplayInterrupted(
                f"replay of {source} interrupted after {tally.total:,} events ({where}); progress is saved: "
                "resume it with `migration-kit resume` (or Migration.replay(path, resume=True))",
                line=identity.line if identity is not None else 0,
                total=tally.total,
            ) from None
        if identity is not None and last is not None:
            identity.advance(last.line, last.end)
        decision = self._settle_replay(tally, monitor, source, state)
        save("done")
        return self._freeze_replay(tally, decision, source, skipped, elapsed_before + perf_counter() - started)

    def _settle_replay(self, tally: ReplayTally, monitor: Monitor, source: str, state: PhaseState) -> Decision:
        """The end of a replay: the decision, the evidence saved, the policy acted on, noise saved."""
        decision = monitor.finish(tally.evidence)
        self.evidence.save(source, tally.evidence, state.attempt)
        self.phases.act_on(decision, state)
        self.noise_book.save()
        return decision

    def _freeze_replay(self, tally: ReplayTally, decision: Decision, source: str, skipped: list[SkippedLine], duration: float) -> ReplayReport:
        return tally.freeze(
            decision,
            migration=self.name,
            source=source,
            skipped=skipped,
            duration=duration,
            noise=tuple(self.noise.summary()) if self.comparator.learning is not None else (),
            graph=self.candidate.flow.graph_data(tally.observed) if self.candidate.flow is not None else None,
            policy=drawable_limits(self.policy),
        )

    # -- replaying across processes (migration_kit.run.distributed) ----------------------------------

    def _distributed_unfinished(self, path: str | Path) -> bool:
        from migration_kit.run.distributed import unfinished_job

        return unfinished_job(self.store.records, path) is not None

    def _replay_distributed(self, path: Any, *, on_result: Any, stop: Any, **options: Any) -> ReplayReport:
        from migration_kit.run.distributed import DistributedReplay

        if not isinstance(path, (str, Path)):
            raise ConfigurationError("replay(..., workers=N) splits a log file: pass its path")
        state = self.phases.read()[0]
        monitor = Monitor(self.policy, phase=state.phase, percent=state.percent)
        result = DistributedReplay(self, path, **options).run(monitor, on_result=on_result, stop=stop)
        self.noise_book.adopt(result.noise)  # what the partitions learned, beside what was loaded
        decision = self._settle_replay(result.tally, monitor, result.source, state)
        result.finished()
        return self._freeze_replay(result.tally, decision, result.source, result.skipped, result.duration)

    def _progress(self, path: str | Path) -> dict[str, Any] | None:
        """The saved progress of this migration's replay of ``path``, if any."""
        data, _ = self.store.records.get(progress_key(path))
        return data

    def _save_progress(self, identity: LogIdentity, doc: dict[str, Any]) -> None:
        key = progress_key(identity.path)
        self.store.records.put(key, {**doc, "log": identity.to_dict()})
        self.store.records.put(keys.REPLAY_LAST, {"key": key, "path": identity.path, "status": doc["status"]})

    def unfinished_replay(self, path: str | Path | None = None) -> str | None:
        """The log path of the last replay (or of ``path``'s) if it did not finish (what ``resume`` continues)."""
        if path is not None:
            saved = self._progress(path)
            last, _ = self.store.records.get(keys.REPLAY_LAST)
            started = bool(last) and last.get("key") == progress_key(path) and last.get("status") != "done"
            return str(Path(path).resolve()) if (saved and saved.get("status") != "done") or (not saved and started) else None
        last, _ = self.store.records.get(keys.REPLAY_LAST)
        if not last or last.get("status") == "done":
            return None
        return str(last["path"])

    def replayed(self, path: str | Path) -> bool:
        """Whether a replay of ``path`` saved any progress in this store (finished or not)."""
        return self._progress(path) is not None

    def replay_started(self, path: str | Path) -> None:
        """Record that a replay of ``path`` starts, so ``resume`` finds it even if killed before its first save."""
        resolved = str(Path(path).resolve())
        self.store.records.put(keys.REPLAY_LAST, {"key": progress_key(resolved), "path": resolved, "status": "started"})

    @staticmethod
    def _entries(src: Source, skip_bad: bool) -> tuple[Iterator[LogEntry], str, list[SkippedLine]]:
        if isinstance(src, (str, Path)):
            src = EventLog(src, on_error="skip" if skip_bad else "raise")
        if isinstance(src, EventLog):
            if skip_bad:
                src.on_error = "skip"
            return iter(src), str(src.path), src.skipped

        def entries() -> Iterator[LogEntry]:
            for i, item in enumerate(src, start=1):
                if isinstance(item, LogEntry):
                    yield item
                elif isinstance(item, Event):
                    yield LogEntry(i, item)
                elif isinstance(item, dict):
                    yield LogEntry(i, Event.model_validate(item))
                else:
                    raise BadEventLog(f"item {i} of the events given to replay() is a {type(item).__name__}, not an Event")

        return entries(), "<events>", []



def drawable_limits(policy: Any) -> dict[str, Any] | None:
    """The policy's divergence limit (for the report's plot), found anywhere in its tree."""
    try:
        tree = policy.model_dump() if hasattr(policy, "model_dump") else None
    except Exception:  # noqa: BLE001 - a report must not fail over a drawing hint
        return None
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            if node.get("rate") == "divergence" and isinstance(node.get("limit"), (int, float)):
                return {"divergence_limit": float(node["limit"])}
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return None
