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
