"""Redaction: the values a migration never lets out of the process unmasked.

Shadowing production copies production data. A ``Redactor`` masks it on the
way out (stream entries, recorded logs, reports, spans, metric labels, stored
divergence examples, CLI output) while comparison keeps using the real values
in memory, so a changed card number is still a divergence, reported masked.

What is masked:

* **By rule**: glob paths (``Migration(..., redact=[...])``) relative to the
  document they name: ``payload.card.number`` is ``event["payload"]["card"]["number"]``
  of an event (and of every emitted event), ``args[0].card`` an effect call's
  argument, ``card`` (or ``state.card``) a key of saga state. A rule also
  matches the full path a difference reports (``emitted[0].payload.card.number``).
  ``*`` matches one segment, ``**`` any number (``**.token`` matches ``token``
  at any depth), ``[*]`` any list index, and list indices may be left out
  (``payload.items.card`` matches ``payload.items[2].card``). A rule on a
  dict or list masks every value inside it, keeping its shape. Values a rule
  masked are also scrubbed wherever else they appear in the same event's
  output (an error message quoting an e-mail address, a handler copying a
  card number to another field).
* **By pattern**: card numbers anywhere (strings, free text, integers): 13 to
  19 digits, optionally grouped by single spaces or dashes, that pass the
  Luhn check. In a reported difference where either value holds a card
  number, every 13 to 19 digit run in both values is masked, Luhn or not, so
  a near miss does not show the card it almost equals.

An event's envelope (``type``, ``id``, ``correlation_id``, ``causation_id``,
``timestamp``) and the structure around it (node and port names, kinds,
timings) are never masked: they are how events are found and joined.

Masking is a keyed hash, ``[redacted:3f9a1c2b]`` (the first 8 hex digits of
HMAC-SHA256), so equal values stay recognisably equal and a masked value is
never masked again. The key is ``MIGRATION_KIT_REDACT_KEY`` (any string; set
the same one on every process, e.g. ``openssl rand -hex 32``, so masks agree
across the tap, workers and reports), else a random key made once per process:
then masks agree within one process only.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import hmac
import json
import os
import re
from collections.abc import Iterable
from secrets import token_bytes
from typing import Any

from migration_errors import ConfigurationError

from migration_kit.compare.comparator import Comparison, Difference, glob_source

__all__ = ["KEY_ENV", "Redactor", "default_redactor", "is_card", "luhn"]

KEY_ENV = "MIGRATION_KIT_REDACT_KEY"
_PROCESS_KEY = token_bytes(32)  # used when KEY_ENV is unset: masks agree within this process only

_TOKEN = re.compile(r"\[redacted:[0-9a-f]{8}\]")
_TOKEN_SPLIT = re.compile(r"(\[redacted:[0-9a-f]{8}\])")
# Digits joined by single spaces or dashes; a card number is a window of whole groups of one run.
_RUN = re.compile(r"[0-9](?:[ -]?[0-9])*")
_MAYBE_CARD = re.compile(r"[0-9](?:[ -]?[0-9]){12}")  # cheap test: at least 13 digits close together
_GROUP_SEP = re.compile(r"[ -]")
_INDEX = re.compile(r"\[\d+\]")
_PLAIN = re.compile(r"[A-Za-z_][A-Za-z0-9_\-]*\Z")
MIN_SECRET = 5  # shorter rule-masked values are not scrubbed from free text (too many false hits)

# Envelope and structure: never masked, by rule or pattern.
_EVENT_KEYS = frozenset({"type", "id", "correlation_id", "causation_id", "timestamp"})
_EMISSION_KEYS = frozenset({"node", "type", "id", "correlation", "depth"})
_WRITE_KEYS = frozenset({"database", "table", "op", "changed", "node"})
_CALL_KEYS = frozenset({"port", "mode", "node"})


def luhn(digits: str) -> bool:
    """True when a string of ASCII digits passes the Luhn check."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def _card_int(value: int, loose: bool = False) -> bool:
    if value < 0:
        value = -value
    digits = str(value)
    return 13 <= len(digits) <= 19 and (loose or luhn(digits))


def is_card(value: Any) -> bool:
    """True when ``value`` is or contains a card number (the built-in pattern)."""
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return _card_int(value)
    if isinstance(value, float):
        return value.is_integer() and _card_int(int(value))
    if isinstance(value, str):
        return _MAYBE_CARD.search(value) is not None and bool(_card_spans(value, loose=False))
    if isinstance(value, dict):
        return any(is_card(k) or is_card(v) for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return any(is_card(v) for v in value)
    return False


def _card_spans(text: str, *, loose: bool) -> list[tuple[int, int, str]]:
    """(start, end, digits) of each card number in ``text``, left to right, not overlapping.

    A card is a window of whole digit groups of one run (so it is bounded by
    non-digits) holding 13 to 19 digits that pass Luhn (any, when ``loose``).
    At each group the longest card starting there is taken; the scan then
    goes on after it, so no card is left in what remains.
    """
    spans: list[tuple[int, int, str]] = []
    for run in _RUN.finditer(text):
        s = run.group()
        if len(s) < 13:
            continue
        groups: list[tuple[int, int]] = []  # (start, end) in text
        base = run.start()
        pos = 0
        for part in _GROUP_SEP.split(s):
            groups.append((base + pos, base + pos + len(part)))
            pos += len(part) + 1
        i = 0
        while i < len(groups):
            found = None
            n = 0
            j = i
            while j < len(groups) and n + (groups[j][1] - groups[j][0]) <= 19:
                n += groups[j][1] - groups[j][0]
                j += 1
            # groups[i:j] hold at most 19 digits; try the longest window first
            while j > i:
                if n >= 13:
                    digits = "".join(text[a:b] for a, b in groups[i:j])
                    if loose or luhn(digits):
                        found = (groups[i][0], groups[j - 1][1], digits)
                        break
                j -= 1
                n -= groups[j][1] - groups[j][0]
            if found is not None:
                spans.append(found)
                i = j
            else:
                i += 1
    return spans


def _join(path: str, key: Any) -> str:
    if isinstance(key, str) and _PLAIN.match(key):
        return f"{path}.{key}" if path else key
    return f"{path}[{key!r}]"


def _local_of(path: str) -> str:
    """The path inside the document a difference path or key points into."""
    for head in ("emitted", "effects"):
        if path.startswith(head) and len(path) > len(head) and path[len(head)] in "[<":
            close = path.find("]" if path[len(head)] == "[" else ">", len(head))
            if close < 0:
                return path
            rest = path[close + 1 :]
            return rest[1:] if rest.startswith(".") else rest
    if path == "state":
        return ""
    if path.startswith("state."):
        return path[6:]
    if path.startswith("state["):
        return path[5:]
    return path


def _prefixes(path: str) -> list[str]:
    """The path and each of its ancestors (``a.b[0].c`` -> ``a``, ``a.b``, ``a.b[0]``, ``a.b[0].c``)."""
    out = [path[:i] for i, ch in enumerate(path) if ch in ".[" and i > 0]
    out.append(path)
    return out


def _key_bytes(key: bytes | str | None) -> bytes:
    if key is None:
        env = os.environ.get(KEY_ENV)
        return env.encode() if env else _PROCESS_KEY
    if isinstance(key, str):
        key = key.encode()
    if not key:
        raise ConfigurationError(f"a redaction key must not be empty (set {KEY_ENV} or pass key=)")
    return key


class Redactor:
    """Masks rule-matched values and card numbers in everything that leaves the process.

    Args:
        rules: glob paths whose values are masked (see the module docstring).
        key: the HMAC key (bytes or text); default ``MIGRATION_KIT_REDACT_KEY``,
            else a random key made once per process.
        cards: mask card numbers found anywhere (on by default).

    Every method returns new data; what it is given is never changed.

    Raises:
        ConfigurationError: a rule is not a non-empty string.
    """

    def __init__(self, rules: Iterable[str] = (), *, key: bytes | str | None = None, cards: bool = True) -> None:
        rules = tuple(rules)
        for r in rules:
            if not isinstance(r, str) or not r.strip():
                raise ConfigurationError(f"redact=[...]: every rule is a glob path such as 'payload.card.number', not {r!r}")
        self.rules = rules
        self.cards = cards
        self._key = _key_bytes(key)
        self._rx = re.compile("|".join(f"(?:{glob_source(r, zero_segments=True)})" for r in rules) + r"\Z") if rules else None

    def __repr__(self) -> str:
        return f"Redactor(rules={list(self.rules)!r}, cards={self.cards})"

    # -- masking one value -------------------------------------------------------------

    def keyed_by_environment(self) -> bool:
        """Whether this redactor masks with the key the environment gives now (``KEY_ENV``, else this process's)."""
        return self._key == _key_bytes(None)

    def token(self, value: Any) -> str:
        """The mask of ``value``: ``[redacted:<8 hex>]``, equal for equal values under one key."""
        if isinstance(value, str):
            if _TOKEN.fullmatch(value):
                return value
            stripped = value.strip()
            spans = _card_spans(stripped, loose=False) if _MAYBE_CARD.search(stripped) else []
            # A string that is one card number masks like its digits: "4111 1111 ..." == "41111111...".
            canon = spans[0][2] if len(spans) == 1 and spans[0][0] == 0 and spans[0][1] == len(stripped) else value
        else:
            canon = "\x00json:" + _canonical(value)
        digest = hmac.new(self._key, canon.encode("utf-8", "surrogatepass"), hashlib.sha256).hexdigest()
        return f"[redacted:{digest[:8]}]"

    def matches(self, path: str) -> bool:
        """True when a rule matches ``path`` or one of its ancestors (``path`` as a difference reports it)."""
        if self._rx is None:
            return False
        local = _local_of(path)
        return any(self._hit(p) for p in _prefixes(path)) or (local != path and any(self._hit(p) for p in _prefixes(local)))

    def _hit(self, path: str) -> bool:
        rx = self._rx
        if rx is None or not path:
            return False
        if rx.match(path):
            return True
        return "[" in path and rx.match(_INDEX.sub("", path)) is not None

    def text(self, value: str, secrets: Iterable[str] = (), *, loose: bool = False) -> str:
        """Free text with card numbers (and the given rule-masked ``secrets``) masked in place."""
        if not isinstance(value, str):
            return value
        secrets = tuple(s for s in secrets if s in value) if secrets else ()
        if not secrets and not (self.cards and _MAYBE_CARD.search(value)):
            return value
        if secrets:
            rx = _secret_rx(tuple(sorted(set(secrets), key=lambda s: (-len(s), s))))
            parts = _TOKEN_SPLIT.split(value)  # odd indices are tokens already: never masked again
            parts[::2] = [rx.sub(lambda m: self.token(m.group()), p) for p in parts[::2]]
            value = "".join(parts)
        if self.cards and _MAYBE_CARD.search(value):
            parts = _TOKEN_SPLIT.split(value)
            parts[::2] = [self._cards(p, loose) for p in parts[::2]]
            value = "".join(parts)
        return value

    def _cards(self, text: str, loose: bool) -> str:
        if not _MAYBE_CARD.search(text):
            return text
        spans = _card_spans(text, loose=loose)
        if not spans:
            return text
        out = []
        pos = 0
        for a, b, digits in spans:
            out.append(text[pos:a])
            out.append(self.token(digits))
            pos = b
        out.append(text[pos:])
        return "".join(out)

    # -- documents ---------------------------------------------------------------------

    def value(self, value: Any, path: str = "", *, secrets: Iterable[str] = (), loose: bool = False) -> Any:
        """Any JSON-like value, masked; ``path`` is where it sits (rules match below it)."""
        return self._walk(value, path, _local_of(path), tuple(secrets), frozenset(), loose)

    def _walk(self, v: Any, full: str, local: str, secrets: tuple[str, ...], keep: frozenset[str], loose: bool) -> Any:
        if self._rx is not None and (self._hit(full) or (local != full and self._hit(local))):
            return self._mask_all(v)
        t = type(v)
        if t is str:
            return self.text(v, secrets, loose=loose)
        if t is dict or isinstance(v, dict):
            out = {}
            for k, x in v.items():
                nk = self.text(k, secrets, loose=loose) if isinstance(k, str) else k
                if k in keep:
                    out[nk] = x
                else:
                    out[nk] = self._walk(x, _join(full, k), _join(local, k), secrets, frozenset(), loose)
            return out
        if t is list or t is tuple:
            return [self._walk(x, f"{full}[{i}]", f"{local}[{i}]", secrets, frozenset(), loose) for i, x in enumerate(v)]
        if v is None or t is bool:
            return v
        if t is int:
            return self.token(v) if self.cards and _card_int(v, loose) else v
        if t is float:  # a measurement; only a whole number written as a float can be a card number
            return self.token(v) if self.cards and v.is_integer() and _card_int(int(v), loose) else v
        # Anything else is written out as str() later: mask what that would show.
        shown = str(v)
        masked = self.text(shown, secrets, loose=loose)
        return v if masked == shown else masked

    def _mask_all(self, v: Any) -> Any:
        """Every value inside ``v`` masked; dicts and lists keep their shape."""
        if v is None:
            return None
        if isinstance(v, dict):
            return {(self.text(k) if isinstance(k, str) else k): self._mask_all(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [self._mask_all(x) for x in v]
        return self.token(v)

    # -- what a rule masks, to scrub it elsewhere ----------------------------------------

    def secrets_in(self, value: Any, path: str = "", *, keep: frozenset[str] = frozenset()) -> set[str]:
        """The values rules mask inside ``value`` (as text), to scrub from free text about it."""
        found: set[str] = set()
        if self._rx is not None:
            self._collect(value, path, _local_of(path), found, keep, False)
        return found

    def _collect(self, v: Any, full: str, local: str, found: set[str], keep: frozenset[str], hit: bool) -> None:
        if not hit and (self._hit(full) or (local != full and self._hit(local))):
            hit = True
        if isinstance(v, dict):
            for k, x in v.items():
                if k not in keep:
                    self._collect(x, _join(full, k), _join(local, k), found, frozenset(), hit)
        elif isinstance(v, (list, tuple)):
            for i, x in enumerate(v):
                self._collect(x, f"{full}[{i}]", f"{local}[{i}]", found, frozenset(), hit)
        elif hit and v is not None and not isinstance(v, bool):
            s = v if isinstance(v, str) else str(v)
            if len(s) >= MIN_SECRET and not _TOKEN.fullmatch(s):
                found.add(s)

    def event_secrets(self, event: Any) -> set[str]:
        """What rules mask in one event (an ``Event`` or its dict)."""
        doc = event.to_dict() if hasattr(event, "to_dict") else event
        return self.secrets_in(doc, keep=_EVENT_KEYS) if isinstance(doc, dict) else set()

    def comparison_secrets(self, c: Comparison) -> set[str]:
        """What rules mask in a comparison's event, emitted events, effect calls and saga state."""
        if self._rx is None:
            return set()
        found = self.event_secrets(c.event)
        for outcome in (c.legacy, c.candidate):
            for i, e in enumerate(outcome.emitted):
                found |= self.secrets_in(e.to_dict(), f"emitted[{i}]", keep=_EMISSION_KEYS)
            for i, call in enumerate(outcome.effects):
                found |= self.secrets_in(call.to_dict(), f"effects[{i}]", keep=_CALL_KEYS)
            if outcome.state:
                found |= self.secrets_in(outcome.state, "state")
        return found

    # -- shapes that leave the process ------------------------------------------------------

    def event(self, event: Any, *, secrets: Iterable[str] | None = None) -> dict[str, Any]:
        """An event (``Event`` or dict) as a masked dict; its envelope is kept (it still validates)."""
        doc = event.to_dict() if hasattr(event, "to_dict") else event
        found = tuple(self.event_secrets(doc)) if secrets is None else tuple(secrets)
        return self._walk(doc, "", "", found, _EVENT_KEYS, False)

    def call(self, call: dict[str, Any], index: int = 0, *, secrets: Iterable[str] = ()) -> dict[str, Any]:
        """One effect call's dict (``EffectCall.to_dict()``), masked."""
        path = f"effects[{index}]"
        return self._walk(call, path, "", tuple(secrets), _CALL_KEYS, False)

    def record(self, record: dict[str, Any], *, secrets: Iterable[str] | None = None) -> dict[str, Any]:
        """An outcome record (``Outcome.to_record()``), masked: events, effect calls, state, errors.

        ``secrets``: values to scrub from its text; by default what its own rules mask.
        """
        s = tuple(self._record_secrets(record)) if secrets is None else tuple(secrets)
        out = dict(record)
        if isinstance(record.get("event"), dict):
            out["event"] = self.event(record["event"], secrets=s)
        out["emitted"] = [
            self._walk(e, f"emitted[{i}]", "", s, _EMISSION_KEYS, False) for i, e in enumerate(record.get("emitted") or [])
        ]
        if record.get("effects") is not None:
            out["effects"] = [self.call(c, i, secrets=s) for i, c in enumerate(record["effects"])]
        out["state"] = self._walk(record.get("state"), "state", "", s, frozenset(), False)
        out["errors"] = [self._error(e, s) for e in record.get("errors") or []]
        if record.get("writes"):  # rows written through declared databases: values scrubbed like the rest
            out["writes"] = [self._walk(w, "writes", "", s, _WRITE_KEYS, False) for w in record["writes"]]
        runs = []
        flat = 0
        for run in record.get("trace") or []:
            run = dict(run)
            calls = []
            for c in run.get("effects") or []:
                calls.append(self.call(c, flat, secrets=s))
                flat += 1
            run["effects"] = calls
            run["error"] = self._error(run.get("error"), s)
            runs.append(run)
        out["trace"] = runs
        return out

    def _record_secrets(self, record: dict[str, Any]) -> set[str]:
        if self._rx is None:
            return set()
        found = self.event_secrets(record["event"]) if isinstance(record.get("event"), dict) else set()
        for i, e in enumerate(record.get("emitted") or []):
            found |= self.secrets_in(e, f"emitted[{i}]", keep=_EMISSION_KEYS)
        calls = record.get("effects")
        if calls is None:
            calls = [c for run in record.get("trace") or [] for c in run.get("effects") or []]
        for i, c in enumerate(calls):
            found |= self.secrets_in(c, f"effects[{i}]", keep=_CALL_KEYS)
        if record.get("state"):
            found |= self.secrets_in(record["state"], "state")
        return found

    def _error(self, err: Any, secrets: tuple[str, ...]) -> Any:
        if not isinstance(err, dict):
            return err
        return {**err, "message": self.text(err.get("message", ""), secrets)}

    def entry(self, doc: dict[str, Any]) -> dict[str, Any]:
        """A shadow stream entry (``migration_kit.live.tap``), masked: event, recorded outcome, saga state."""
        out = dict(doc)
        secrets = self.event_secrets(doc["event"]) if isinstance(doc.get("event"), dict) else set()
        for side in ("legacy", "candidate"):
            if isinstance(doc.get(side), dict):
                secrets |= self._record_secrets(doc[side])
        if doc.get("state_before"):
            secrets |= self.secrets_in(doc["state_before"], "state")
        s = tuple(secrets)
        if isinstance(doc.get("event"), dict):
            out["event"] = self.event(doc["event"], secrets=s)
        for side in ("legacy", "candidate"):
            if isinstance(doc.get(side), dict):
                out[side] = self.record(doc[side], secrets=s)
        out["state_before"] = self._walk(doc.get("state_before"), "state", "", s, frozenset(), False)
        return out

    def difference(self, d: Difference, secrets: Iterable[str] = ()) -> Difference:
        """A ``Difference`` with both values masked when its path is redacted or either holds a card."""
        m = self.difference_dict({"path": d.path, "legacy": d.legacy, "candidate": d.candidate, "key": d.key}, secrets)
        return dataclasses.replace(d, path=m["path"], legacy=m["legacy"], candidate=m["candidate"], key=m["key"])

    def difference_dict(self, d: dict[str, Any], secrets: Iterable[str] = ()) -> dict[str, Any]:
        """A difference as a dict (``Difference.to_dict()``, or a stored example), masked."""
        s = tuple(secrets)
        path = str(d.get("path", ""))
        out = dict(d)
        out["path"] = self.text(path, s)
        if "key" in d and isinstance(d["key"], str):
            out["key"] = self.text(d["key"], s)
        a, b = d.get("legacy"), d.get("candidate")
        if self.matches(path):
            out["legacy"], out["candidate"] = self._mask_all(a), self._mask_all(b)
            return out
        loose = self.cards and (is_card(a) or is_card(b))
        out["legacy"] = self._walk(a, path, _local_of(path), s, frozenset(), loose)
        out["candidate"] = self._walk(b, path, _local_of(path), s, frozenset(), loose)
        return out

    def comparison(self, c: Comparison) -> dict[str, Any]:
        """``Comparison.to_dict()``, masked (differences, and text quoting rule-masked values)."""
        data = c.to_dict()
        if not c.differences:
            return data
        secrets = tuple(self.comparison_secrets(c))
        data["differences"] = [self.difference_dict(x, secrets) for x in data["differences"]]
        return data

    def example(self, ex: dict[str, Any], secrets: Iterable[str] = ()) -> dict[str, Any]:
        """A stored example (a comparison's dict, or a group's difference), masked; ``secrets`` as in ``text``."""
        s = tuple(secrets)
        out = dict(ex)
        if isinstance(ex.get("differences"), list):
            out["differences"] = [self.difference_dict(x, s) if isinstance(x, dict) else x for x in ex["differences"]]
        if "path" in ex and ("legacy" in ex or "candidate" in ex):
            out.update(self.difference_dict(ex, s))
        return out

    def report(self, data: dict[str, Any]) -> dict[str, Any]:
        """A replay report's dict (``ReplayReport.to_dict()``), masked: groups, examples, noise, reasons."""
        out = dict(data)
        if isinstance(data.get("groups"), list):
            out["groups"] = [self._group(g) for g in data["groups"]]
        if isinstance(data.get("examples"), list):
            out["examples"] = [self.example(x) if isinstance(x, dict) else x for x in data["examples"]]
        if isinstance(data.get("noise"), list):
            out["noise"] = [self._noise(r) for r in data["noise"]]
        if isinstance(data.get("skipped"), list):
            out["skipped"] = [{**s, "reason": self.text(s.get("reason", ""))} if isinstance(s, dict) else s for s in data["skipped"]]
        if isinstance(data.get("decision"), dict):
            reasons = data["decision"].get("reasons")
            if isinstance(reasons, list):
                out["decision"] = {**data["decision"], "reasons": [self.text(r) for r in reasons]}
        return out

    def _group(self, g: Any) -> Any:
        if not isinstance(g, dict):
            return g
        out = dict(g)
        if isinstance(g.get("path"), str):
            out["path"] = self.text(g["path"])
        if isinstance(g.get("example"), dict):
            out["example"] = self.example(g["example"])
        return out

    def _noise(self, row: Any) -> Any:
        if not isinstance(row, dict):
            return row
        out = dict(row)
        path = str(row.get("path", ""))
        out["path"] = self.text(path)
        example = row.get("example")
        if self.matches(path):
            out["example"] = self._mask_all(example)
        elif isinstance(example, dict):  # {"first": value, "second": value}, both values at ``path``
            out["example"] = {k: self.value(v, path) for k, v in example.items()}
        else:
            out["example"] = self.value(example, path)
        return out


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str, ensure_ascii=False)


@functools.lru_cache(maxsize=256)
def _secret_rx(secrets: tuple[str, ...]) -> re.Pattern[str]:
    return re.compile("|".join(re.escape(s) for s in secrets))


# -- the default ---------------------------------------------------------------------------
#
# The facade builds each migration's ``Redactor`` from ``redact=`` and hands it to every sink
# (``Migration.redactor``). A sink given none, and output that knows no migration (the ``report``
# command), masks with the built-in rules: card numbers only. There is no lookup by name.

_DEFAULT: list[Redactor] = []  # rebuilt when KEY_ENV changes, so its masks follow the environment's key


def default_redactor() -> Redactor:
    """The redactor with no rules (card numbers only), for output that knows no migration."""
    if not _DEFAULT or not _DEFAULT[0].keyed_by_environment():
        _DEFAULT[:] = [Redactor()]
    return _DEFAULT[0]
