from __future__ import annotations

import io
import json
import logging

from callplane.logs import JsonFormatter, PrettyFormatter
from callplane.redact import mask_phone, redact


def test_redact_phones_and_emails() -> None:
    text = "call from +1 (425) 555-1211, sip:+142555512112@sip.example.com, mail ann.lee@contoso.com"
    out = redact(text)
    assert "555-1211" not in out and "142555512112" not in out and "ann.lee" not in out
    assert "***11" in out and "[email]" in out
    assert redact("on 2026-11-29 after 1500 ms, id rtc_123abc") == "on 2026-11-29 after 1500 ms, id rtc_123abc"
    assert mask_phone("+14255550123") == "•••••••0123"
    assert mask_phone(None) == "unknown"


def test_both_formats_redact_messages_args_and_extras() -> None:
    record = logging.makeLogRecord(
        {
            "msg": "caller %s said %s",
            "args": ("+14255550123", "mail me at bob@x.com"),
            "levelno": logging.INFO,
            "levelname": "INFO",
            "cat": "CALL",
            "call_id": "rtc_abc",
            "caller": "+14255550123",
        }
    )
    pretty = PrettyFormatter(colour=False).format(record)
    doc = json.loads(JsonFormatter().format(record))
    for out in (pretty, json.dumps(doc)):
        assert "4255550123" not in out and "bob@x.com" not in out
    assert doc["cat"] == "CALL" and doc["callId"] == "rtc_abc"
    assert "📞 CALL [rtc_abc]" in pretty
    stream = io.StringIO()
    assert stream.getvalue() == ""


def test_call_summary_is_structured_and_drawn_only_by_pretty_logs() -> None:
    summary = {
        "status": "completed",
        "reason": "caller hung up",
        "durationMs": 61234,
        "tools": ["lookup_order"],
        "turns": 7,
        "bargeIns": 1,
        "latencyP50Ms": 420,
        "sentiment": "positive",
    }
    record = logging.makeLogRecord(
        {
            "msg": "call summary",
            "levelno": logging.INFO,
            "levelname": "INFO",
            "cat": "SUCCESS",
            "call_id": "rtc_0123456789abcdef0123",
            "callSummary": summary,
        }
    )
    pretty = PrettyFormatter(colour=False).format(record).splitlines()
    assert pretty[0].endswith("✓ SUCCESS [abcdef0123] call summary".replace("[abcdef0123]", "[89abcdef0123]"))
    assert pretty[1].startswith("╔") and "Call summary 89abcdef0123" in pretty[2], "the box names the tag's 12 chars"
    assert all(line.strip() for line in pretty), "no empty line before the box"
    doc = json.loads(JsonFormatter().format(record))
    assert doc["callSummary"] == summary and doc["msg"] == "call summary" and "╔" not in json.dumps(doc)
