"""Spans and metrics, checked locally with the OpenTelemetry SDK's in-memory exporter and reader:
one trace per call from the webhook to the hang-up, with the hand-off carrying the context."""

from __future__ import annotations

from typing import Any

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from callplane.telemetry import Telemetry
from tests.stack import run_stack


def metric_points(reader: InMemoryMetricReader) -> dict[str, list[Any]]:
    out: dict[str, list[Any]] = {}
    data = reader.get_metrics_data()
    for rm in data.resource_metrics if data else []:
        for sm in rm.scope_metrics:
            for m in sm.metrics:
                out.setdefault(m.name, []).extend(m.data.data_points)
    return out


async def test_one_trace_per_call_and_the_metrics(conn: str) -> None:
    exporter, reader = InMemorySpanExporter(), InMemoryMetricReader()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    telemetry = Telemetry(tracer_provider, MeterProvider(metric_readers=[reader]))
    async with run_stack(conn, time_scale=40, telemetry=telemetry) as stack:
        call_id = await stack.place("standard")
        await stack.wait_call(call_id, timeout=60)
        live = metric_points(reader)  # while the replica is up, the gauge reports its live calls
    spans = {s.name: s for s in exporter.get_finished_spans()}
    assert {"webhook", "accept", "handoff", "call", "tool"} <= set(spans)
    trace_ids = {s.context.trace_id for s in exporter.get_finished_spans()}
    assert len(trace_ids) == 1, "webhook, accept, hand-off, call and tools are one trace"
    assert spans["call"].parent is not None and spans["call"].parent.span_id == spans["handoff"].context.span_id
    assert spans["accept"].parent.span_id == spans["webhook"].context.span_id
    assert spans["call"].attributes["call.id"] == call_id
    assert spans["call"].attributes["call.status"] == "completed"
    tools = [s for s in exporter.get_finished_spans() if s.name == "tool"]
    assert sorted(s.attributes["tool.name"] for s in tools) == ["check_inventory", "lookup_order"]
    assert all(s.parent.span_id == spans["call"].context.span_id for s in tools)
    assert spans["webhook"].attributes["http.status_code"] == 200

    assert sum(p.count for p in live["voice.turn_latency"]) == 3
    assert sum(p.count for p in live["voice.tool_duration"]) == 2
    assert {dict(p.attributes)["status"] for p in live["voice.webhook_outcomes"]} == {200}
    assert [p.value for p in live["voice.active_calls"]] == [0]
    assert sum(p.value for p in live["voice.calls_started"]) == 1


def test_every_app_logger_reaches_the_log_exporter_redacted() -> None:
    """The handler the Azure Monitor distro attaches (an OpenTelemetry LoggingHandler on the root
    logger) gets the redacting filter: records of both apps arrive, numbers masked, with the call
    id as an attribute of its own."""
    import logging

    from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
    from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor

    from callplane.telemetry import EXPORTED_LOGGER, redact_exported_logs

    exporter = InMemoryLogRecordExporter()
    provider = LoggerProvider()
    provider.add_log_record_processor(SimpleLogRecordProcessor(exporter))
    handler = redact_exported_logs(LoggingHandler(logger_provider=provider))
    root = logging.getLogger(EXPORTED_LOGGER)
    root.addHandler(handler)
    try:
        logging.getLogger("session_host.session").warning(
            "caller %s said bob@example.com", "+14255550123", extra={"call_id": "rtc_abc", "caller": "+14255550123"}
        )
        logging.getLogger("function_app.webhook").warning(
            "webhook from +1 (425) 555-0199", extra={"call_id": "rtc_def"}
        )
    finally:
        root.removeHandler(handler)
    records = [r.log_record for r in exporter.get_finished_logs()]
    bodies = [str(r.body) for r in records]
    assert len(records) == 2, bodies
    assert all("555" not in b and "example.com" not in b for b in bodies), bodies
    attrs = [dict(r.attributes or {}) for r in records]
    assert [a.get("call_id") for a in attrs] == ["rtc_abc", "rtc_def"]
    assert "4255550123" not in str(attrs[0].get("caller"))
