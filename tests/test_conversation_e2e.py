"""Scripted conversations through the real system: tools, latency, transcripts, validation."""

from __future__ import annotations

import json
import logging
from typing import Any

import aiohttp

from callplane.store.models import CallRecord, TranscriptTurn
from session_host import keys
from session_host.call_observers import CallObserver, CallSummary
from session_host.tools_runner import ToolOutcome
from simulator.protocol import check_server_event
from simulator.scenario import load_scenario
from tests.stack import run_stack


async def test_standard_scenario_runs_tools_and_measures_turns(conn: str) -> None:
    async with run_stack(conn, time_scale=40) as stack:
        call_id = await stack.place("standard")
        summary = await stack.wait_ended(call_id, timeout=60)
        assert summary["errorsSent"] == []
        outputs = list(summary["toolOutputs"].values())
        assert outputs[0]["found"] is True and outputs[0]["order_id"] == "ACME-12345"
        assert outputs[1]["in_stock"] == 7
        assert len(summary["toolRoundTripsMs"]) == 2

        call = await stack.wait_call(call_id)
        assert call["status"] == "completed" and call["endReason"] == "caller hung up"
        assert [t["name"] for t in call["toolCalls"]] == ["lookup_order", "check_inventory"]
        assert all(t["success"] for t in call["toolCalls"])
        assert call["userSpeechEvents"] == 3
        assert len(call["latencies"]) == 3 and all(x > 0 for x in call["latencies"])
        assert call["sentiment"] == "positive"  # "Great", "Thank you"
        assert "lookup_order" in call["summary"]

        transcript = (await stack.api(f"/api/calls/{call_id}/transcript"))["transcript"]
        speakers = [t["speaker"] for t in transcript]
        assert speakers.count("user") == 3  # openai dialect: caller transcription
        assert transcript[-1]["text"].endswith("Goodbye!")
        assert [t["timestamp"] for t in transcript] == sorted(t["timestamp"] for t in transcript)


async def test_azure_dialect_has_no_caller_transcripts(conn: str) -> None:
    async with run_stack(conn, dialect="azure", time_scale=40) as stack:
        call_id = await stack.place("standard")
        summary = await stack.wait_ended(call_id, timeout=60)
        assert summary["errorsSent"] == []
        call = await stack.wait_call(call_id)
        assert call["status"] == "completed" and len(call["toolCalls"]) == 2
        transcript = (await stack.api(f"/api/calls/{call_id}/transcript"))["transcript"]
        assert {t["speaker"] for t in transcript} == {"assistant"}
        assert len(call["latencies"]) == 3  # from speech_stopped, no transcript needed


async def test_simulator_validates_client_events_like_the_service(conn: str) -> None:
    async with run_stack(conn) as stack:
        call = stack.sim.new_call(
            load_scenario("greeting_only").model_copy(update={"hangup": "wait", "wait_limit_ms": 60_000})
        )
        headers = {"Authorization": f"Bearer {stack.sim.config.api_key}"}
        async with stack.http.post(
            f"{stack.sim_url}/v1/realtime/calls/{call.call_id}/accept",
            json={"type": "realtime", "model": "gpt-realtime"},
            headers=headers,
        ) as r:
            assert r.status == 200
        async with stack.http.ws_connect(
            f"{stack.sim_url.replace('http', 'ws')}/v1/realtime?call_id={call.call_id}", headers=headers
        ) as ws:
            first = json.loads((await ws.receive()).data)
            assert first["type"] == "session.created"
            check_server_event(first)
            await ws.send_str(
                json.dumps({"type": "session.update", "event_id": "ev_bad", "session": {"instructions": "x"}})
            )
            err = json.loads((await ws.receive()).data)
            assert err["type"] == "error"
            assert set(err["error"]) >= {"type", "code", "message", "param", "event_id"}
            assert err["error"]["event_id"] == "ev_bad" and "type" in err["error"]["param"]
            await ws.send_str("{not json")
            assert json.loads((await ws.receive()).data)["error"]["code"] == "invalid_json"
            await ws.send_str(
                json.dumps({"type": "session.update", "session": {"type": "realtime", "instructions": "y"}})
            )
            ok = json.loads((await ws.receive()).data)
            assert ok["type"] == "session.updated" and ok["session"]["instructions"] == "y"
            check_server_event(ok)
            await ws.send_str(json.dumps({"type": "response.create"}))
            seen = []
            while True:
                msg = await ws.receive(timeout=10)
                assert msg.type is aiohttp.WSMsgType.TEXT
                ev = json.loads(msg.data)
                check_server_event(ev)  # every server event has the real shape
                seen.append(ev["type"])
                if ev["type"] == "output_audio_buffer.stopped":
                    break
            assert seen[0] == "response.created" and "response.done" in seen
            assert "response.output_audio_transcript.delta" in seen
        # After hangup the call is gone: a new upgrade is refused with 404.
        async with stack.http.post(f"{stack.sim_url}/v1/realtime/calls/{call.call_id}/hangup", headers=headers) as r:
            assert r.status == 200
        async with stack.http.get(f"{stack.sim_url}/v1/realtime?call_id={call.call_id}", headers=headers) as r:
            assert r.status == 404 and (await r.json())["error"]["code"] == "call_id_not_found"


async def test_malformed_server_events_are_logged_and_skipped(conn: str, caplog: object) -> None:
    from callplane.handoff import HandoffRequest
    from session_host import session_events
    from session_host.session import CallSession

    async with run_stack(conn) as stack:
        app = stack.host_app
        session = CallSession(
            HandoffRequest(callId="rtc_bad", webhookId="wh", receivedAt=1),
            settings=app[keys.SETTINGS],
            http=app[keys.HTTP],
            control=app[keys.CONTROL],
            writer=app[keys.WRITER],
            replica="r",
        )
        with caplog.at_level(logging.DEBUG):  # type: ignore[attr-defined]
            for raw in (
                "not json",
                "[]",
                '{"no": "type"}',
                '{"type":"response.done"}',
                '{"type":"response.output_audio_transcript.delta","delta":7}',
                '{"type":"brand.new.event","event_id":"e"}',
            ):
                session_events.dispatch(session, raw)  # must not raise
        text = caplog.text  # type: ignore[attr-defined]
        assert text.count("malformed server event ignored") == 3
        assert "invalid response.done event ignored" in text
        assert "invalid response.output_audio_transcript.delta event ignored" in text
        assert "unhandled event type brand.new.event" in text
        assert session.call.responseCount == 0


class Recorder(CallObserver):
    """Every event of the calls it observes, in order."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, Any]] = []

    def started(self, call: CallRecord, *, new: bool) -> None:
        self.seen.append(("started", new))

    def changed(self, call: CallRecord, *, urgent: bool = False) -> None:
        self.seen.append(("changed", call.messageCount))

    def turn(self, call: CallRecord, turn: TranscriptTurn) -> None:
        self.seen.append(("turn", (turn.seq, turn.speaker, turn.text)))

    def tool(self, call: CallRecord, outcome: ToolOutcome) -> None:
        self.seen.append(("tool", outcome.name))

    def latency(self, call: CallRecord, ms: float) -> None:
        self.seen.append(("latency", ms))

    def usage(self, call: CallRecord, tokens: int, cost: float) -> None:
        self.seen.append(("usage", tokens))

    def ended(self, call: CallRecord, summary: CallSummary) -> None:
        self.seen.append(("ended", summary))


class Broken(CallObserver):
    """An exporter that fails on every turn and at the end."""

    def turn(self, call: CallRecord, turn: TranscriptTurn) -> None:
        raise RuntimeError("exporter down")

    def ended(self, call: CallRecord, summary: CallSummary) -> None:
        raise RuntimeError("exporter down")


async def test_observers_hear_the_whole_call_and_a_failing_one_costs_nothing(conn: str, caplog: object) -> None:
    """What a call does reaches every observer the app has (store, metrics, log, and any added),
    in order; an observer that raises is logged, and the call, its record and the others go on."""
    recorder = Recorder()
    with caplog.at_level(logging.INFO):  # type: ignore[attr-defined]
        async with run_stack(conn, time_scale=40) as stack:
            stack.host_app[keys.OBSERVERS].add(Broken())
            stack.host_app[keys.OBSERVERS].add(recorder)
            call_id = await stack.place("standard")
            await stack.wait_ended(call_id, timeout=60)
            call = await stack.wait_call(call_id)
            transcript = (await stack.api(f"/api/calls/{call_id}/transcript"))["transcript"]

    # The failing observer cost nothing: the call ran to its end and is stored whole.
    assert call["status"] == "completed" and [t["name"] for t in call["toolCalls"]] == [
        "lookup_order",
        "check_inventory",
    ]
    kinds = [k for k, _ in recorder.seen]
    assert kinds[0] == "started" and recorder.seen[0][1] is True
    assert kinds[-1] == "ended" and kinds.count("ended") == 1
    summary = recorder.seen[-1][1]
    assert summary["status"] == "completed" and summary["tools"] == ["lookup_order", "check_inventory"]
    assert summary["turns"] == len(transcript)
    # Every stored turn was heard, in order, with the same words.
    heard = [v for k, v in recorder.seen if k == "turn"]
    assert [seq for seq, _, _ in heard] == list(range(1, len(transcript) + 1))
    assert [(who, words) for _, who, words in heard] == [(t["speaker"], t["text"]) for t in transcript]
    assert [v for k, v in recorder.seen if k == "tool"] == ["lookup_order", "check_inventory"]
    assert [v for k, v in recorder.seen if k == "latency"] == call["latencies"]
    assert sum(v for k, v in recorder.seen if k == "usage") == call["usage"]["totalTokens"] > 0
    assert kinds.count("changed") >= len(transcript)  # each turn, tool and response changes the record
    text = caplog.text  # type: ignore[attr-defined]
    assert "call observer Broken failed on turn" in text and "call observer Broken failed on ended" in text
    assert "RuntimeError: exporter down" in text
    # The log observer (before it) told the call's story; the recorder (after it) heard it all.
    assert "call summary" in text and "ASSISTANT: " in text
