"""Text that is safe to show: on a terminal, in one line of an error, in a report file.

Event types, payload values, rollback reasons and log lines are data from
outside; shown raw they can drive a terminal (ESC sequences: hyperlinks,
window titles, clearing the screen), reorder what a reader sees (bidi
controls), inject Rich markup (``[/bold]`` raises, ``[link=...]`` makes a live
hyperlink), or crash the writer (a lone surrogate cannot be encoded as UTF-8).
Every such character is shown as its Python escape (``\\x1b``, ``\\u202e``,
``\\ud800``), so nothing is lost and nothing acts.

* ``one_line(text)``: for a line of output or an error message (newlines and tabs escaped too);
* ``markup(text)``: ``one_line`` and Rich's own ``escape``, to paste into Rich markup;
* ``text(value, style)``: a Rich ``Text`` of a value (never parsed as markup);
* ``terminal(text, tty=)``: the last filter before a stream: keeps newlines and tabs (and on a
  terminal the CSI sequences Rich draws with), escapes everything else;
* ``for_file(text)``: for a report file: lone surrogates and C0 controls escaped, newlines kept.
"""

from __future__ import annotations

import re
from typing import Any

from rich.markup import escape as _rich_escape
from rich.text import Text

__all__ = ["for_file", "markup", "one_line", "terminal", "text"]

# C0 controls, DEL, C1 controls, bidi embeddings/overrides/isolates, line/paragraph
# separators, and lone surrogates (a valid pair never reaches a str as two code points).
_OTHERS = "\x7f-\x9f\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069\ud800-\udfff"
_ONE_LINE = re.compile(f"[\x00-\x1f{_OTHERS}]")
_MULTI_LINE = re.compile(f"[\x00-\x08\x0b-\x1f{_OTHERS}]")  # tab and newline pass
# What Rich itself writes to a terminal: CSI sequences (colours, cursor moves of a live
# progress bar) and carriage returns. OSC (hyperlinks, window titles) is not among them.
_RICH = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\r")
_FILE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff]")


def _escape(match: re.Match[str]) -> str:
    c = ord(match.group())
    return f"\\x{c:02x}" if c < 0x100 else f"\\u{c:04x}"


def one_line(value: Any) -> str:
    """``value`` as text on one line: every control, bidi or surrogate character shown as its escape."""
    return _ONE_LINE.sub(_escape, value if isinstance(value, str) else str(value))


def markup(value: Any) -> str:
    """``one_line(value)`` made literal for Rich markup (``[`` can open no tag)."""
    return _rich_escape(one_line(value))


def text(value: Any, style: str = "") -> Text:
    """A Rich ``Text`` showing ``value`` literally on one line (never parsed as markup)."""
    return Text(one_line(value), style=style)


def _multi_line(value: str) -> str:
    return _MULTI_LINE.sub(_escape, value)


def terminal(value: str, *, tty: bool = False) -> str:
    """The last filter before a stream: newlines and tabs pass, and on a terminal (``tty``) the
    CSI sequences and carriage returns Rich draws with; every other control is shown escaped."""
    if not _ONE_LINE.search(value):
        return value
    if not tty:
        return _multi_line(value)
    out, at = [], 0
    for m in _RICH.finditer(value):
        out.append(_multi_line(value[at : m.start()]))
        out.append(m.group())
        at = m.end()
    out.append(_multi_line(value[at:]))
    return "".join(out)


def for_file(value: str) -> str:
    """Text for a UTF-8 report file: lone surrogates and C0 controls escaped (they cannot be written, or break parsers)."""
    return _FILE.sub(_escape, value)
