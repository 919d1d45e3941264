"""Bounds on recorded input: a log line's (or stream entry's) size, nesting depth and integer size.

Recorded logs and stream entries come from outside. Without bounds a single
line can stop a replay for good: 100,000 nested brackets overflow the
parser's recursion, a 5,000-digit integer trips Python's own
``sys.get_int_max_str_digits()`` guard, a 900-level payload parses but breaks
whatever walks it later (copying, comparing, redacting), and a 40 MB entry
costs the worker hundreds of megabytes. Each bound is checked before or while
parsing, and a breach is a clear reason naming the bound and how to raise it.

Defaults (documented in the README, "Bad input and limits"):
``max_line_bytes`` 1 MiB, ``max_depth`` 64 nested objects/arrays,
``max_int_digits`` 640 digits.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from migration_errors import LimitExceeded  # re-exported: it lived here

__all__ = ["DEFAULT_LIMITS", "InputLimits", "LimitExceeded"]

_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)
_BRACKET = re.compile(rb"[\[\]{}]")


@lru_cache(maxsize=8)
def _digit_run(n: int) -> re.Pattern[bytes]:
    return re.compile(rb"[0-9]{%d}" % n)


@dataclass(frozen=True)
class InputLimits:
    """How large, how deep and how long-numbered one recorded line or entry may be."""

    max_bytes: int = 1 << 20
    max_depth: int = 64
    max_int_digits: int = 640

    def check_size(self, raw: bytes | str) -> None:
        """Refuse more than ``max_bytes``."""
        size = len(raw.encode("utf-8", "surrogatepass") if isinstance(raw, str) else raw)
        if size > self.max_bytes:
            raise LimitExceeded(f"is {size:,} bytes, longer than the limit of {self.max_bytes:,} (see 'Bad input and limits' in the README)")

    def check_depth(self, raw: bytes | str) -> None:
        """Refuse JSON nested deeper than ``max_depth`` (scanned before parsing: no recursion)."""
        data = raw.encode("utf-8", "surrogatepass") if isinstance(raw, str) else raw
        if data.count(b"[") + data.count(b"{") <= self.max_depth:
            return  # cannot be deeper than the brackets it has
        depth = 0
        for m in _BRACKET.finditer(_STRING.sub(b'""', data)):
            if m.group() in (b"[", b"{"):
                depth += 1
                if depth > self.max_depth:
                    raise LimitExceeded(f"nests objects or arrays deeper than the limit of {self.max_depth} levels (see 'Bad input and limits' in the README)")
            else:
                depth -= 1

    def _int(self, text: str) -> int:
        digits = len(text) - (text[0] == "-")
        if digits > self.max_int_digits:
            raise LimitExceeded(f"has a {digits:,}-digit integer, longer than the limit of {self.max_int_digits:,} digits (see 'Bad input and limits' in the README)")
        return int(text)

    def loads(self, raw: bytes | str) -> Any:
        """``json.loads`` within the limits (raises ``LimitExceeded`` or ``ValueError``)."""
        self.check_size(raw)
        self.check_depth(raw)
        # Without a run of more digits than the limit anywhere, no integer can break it: the
        # plain parse (no Python callback per integer) returns the same value.
        long_digits = _digit_run(self.max_int_digits + 1).search(raw if isinstance(raw, bytes) else raw.encode("utf-8", "surrogatepass"))
        try:
            return json.loads(raw, parse_int=self._int) if long_digits else json.loads(raw)
        except RecursionError:  # pragma: no cover - the depth check comes first
            raise LimitExceeded(f"nests too deep to parse (limit {self.max_depth} levels)") from None


DEFAULT_LIMITS = InputLimits()
