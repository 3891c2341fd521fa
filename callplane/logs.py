"""Logging set-up: pretty colour categories or one JSON object per line.

Every record passes through redaction on its way out, so a phone number or an email that slips
into a message or an argument is masked in both formats. Categories travel as `extra={"cat": ...}`
(CALL, TOOL, TRANSCRIPT, SUCCESS, WARNING, ERROR, INFO) and call ids as `extra={"call_id": ...}`.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any

from callplane.redact import redact, redact_value

_COLOURS = {
    "CALL": "\033[36m",
    "TOOL": "\033[35m",
    "TRANSCRIPT": "\033[37m",
    "SUCCESS": "\033[32m",
    "WARNING": "\033[33m",
    "ERROR": "\033[31m",
    "INFO": "\033[34m",
}
_ICONS = {
    "CALL": "📞",
    "TOOL": "🔧",
    "TRANSCRIPT": "💬",
    "SUCCESS": "✓",
    "WARNING": "⚠",
    "ERROR": "✗",
    "INFO": "ℹ",
}
_RESET = "\033[0m"
_STD = set(vars(logging.makeLogRecord({})).keys()) | {"message", "asctime", "taskName"}
SUMMARY_FIELD = "callSummary"  # extra: a call's end-of-call fields, drawn as a box by pretty logs
TAG_CHARS = 12  # how much of a call id the pretty tags show (its random tail)


def _category(record: logging.LogRecord) -> str:
    cat = getattr(record, "cat", None)
    if isinstance(cat, str) and cat in _COLOURS:
        return cat
    if record.levelno >= logging.ERROR:
        return "ERROR"
    if record.levelno >= logging.WARNING:
        return "WARNING"
    return "INFO"


def _message(record: logging.LogRecord) -> str:
    return redact(record.getMessage())


_NOT_EXTRA = frozenset(_STD | {"cat", "call_id"})


def _extras(record: logging.LogRecord) -> dict[str, Any]:
    # A set difference, not a test per attribute: most records carry no extra beyond the two.
    attrs = vars(record)
    return {k: redact_value(attrs[k]) for k in sorted(attrs.keys() - _NOT_EXTRA)}


def _stamp(created: float) -> str:
    return time.strftime("%H:%M:%S", time.localtime(created)) + f".{int(created * 1000) % 1000:03d}"


class PrettyFormatter(logging.Formatter):
    def __init__(self, colour: bool) -> None:
        super().__init__()
        self.colour = colour

    def format(self, record: logging.LogRecord) -> str:
        cat = _category(record)
        call_id = getattr(record, "call_id", None)
        tag = f" [{str(call_id)[-TAG_CHARS:]}]" if call_id else ""
        extras = _extras(record)
        summary = extras.pop(SUMMARY_FIELD, None)
        tail = (" " + " ".join(f"{k}={v}" for k, v in extras.items())) if extras else ""
        head = f"{_ICONS[cat]} {cat}"
        if self.colour:
            head = f"{_COLOURS[cat]}{head}{_RESET}"
        line = f"{_stamp(record.created)} {head}{tag} {_message(record)}{tail}"
        if isinstance(summary, dict):
            line += "\n" + summary_box(str(call_id or "")[-TAG_CHARS:], summary)
        if record.exc_info:
            line += "\n" + redact(self.formatException(record.exc_info))
        return line


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "ts": round(record.created * 1000),
            "level": record.levelname.lower(),
            "cat": _category(record),
            "logger": record.name,
            "msg": _message(record),
        }
        call_id = getattr(record, "call_id", None)
        if call_id:
            doc["callId"] = call_id
        doc.update(_extras(record))
        if record.exc_info:
            doc["exc"] = redact(self.formatException(record.exc_info))
        return json.dumps(doc, default=str)


def setup_logging(fmt: str = "pretty", debug: bool = False, stream: Any = None) -> None:
    stream = stream or sys.stderr
    handler = logging.StreamHandler(stream)
    colour = fmt == "pretty" and hasattr(stream, "isatty") and stream.isatty()
    handler.setFormatter(JsonFormatter() if fmt == "json" else PrettyFormatter(colour))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if debug else logging.INFO)
    for noisy in ("azure", "aiohttp.access", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def summary_box(call_tag: str, summary: dict[str, Any]) -> str:
    p50 = summary.get("latencyP50Ms")
    return boxed(
        f"Call summary {call_tag}",
        [
            ("status", f"{summary.get('status')} ({summary.get('reason')})"),
            ("duration", f"{(summary.get('durationMs') or 0) / 1000:.1f}s"),
            ("tools", ", ".join(summary.get("tools") or []) or "none"),
            ("turns", str(summary.get("turns"))),
            ("barge-ins", str(summary.get("bargeIns"))),
            ("latency p50", f"{p50} ms" if p50 is not None else "n/a"),
            ("sentiment", str(summary.get("sentiment"))),
        ],
    )


def boxed(title: str, rows: list[tuple[str, str]]) -> str:
    """A box of rows, for pretty logs."""
    width = max([len(title)] + [len(k) + len(v) + 2 for k, v in rows]) + 2
    lines = ["╔" + "═" * width + "╗", "║ " + title.ljust(width - 1) + "║", "╟" + "─" * width + "╢"]
    lines += ["║ " + f"{k}: {v}".ljust(width - 1) + "║" for k, v in rows]
    lines.append("╚" + "═" * width + "╝")
    return "\n".join(lines)


class Throttle:
    """At most one log line per key per `interval_s`: a store that is down for minutes is said
    once in a while, with how many times it happened meanwhile, not twice a second."""

    def __init__(self, interval_s: float = 30.0) -> None:
        self.interval_s = interval_s
        self._last: dict[str, float] = {}
        self._skipped: dict[str, int] = {}

    def due(self, key: str) -> int | None:
        """None: stay quiet. Otherwise the number of occurrences not logged since the last line."""
        now = time.monotonic()
        if now - self._last.get(key, -1e9) < self.interval_s:
            self._skipped[key] = self._skipped.get(key, 0) + 1
            return None
        self._last[key] = now
        return self._skipped.pop(key, 0)
