"""OpenTelemetry for both apps: one trace per call, and the metrics operators and the scale rule use.

With APPLICATIONINSIGHTS_CONNECTION_STRING set, `configure()` sends everything to Application
Insights through azure-monitor-opentelemetry; without it the OTel API is a no-op and costs nothing.
Tests pass their own SDK providers (in-memory exporter/reader) to `Telemetry`.

Trace: the Function App's `webhook` span (with `accept` and `handoff` children) puts its context
in the hand-off's `traceparent` header; the session host continues it with a `call` span that
lasts until the hang-up, with a `tool` span per function call.
Metrics: voice.active_calls (gauge per replica; the Container Apps scale rule sums it),
voice.turn_latency (ms), voice.tool_duration (ms), voice.webhook_outcomes, voice.errors,
voice.tokens and voice.cost_usd (the model's usage as each response ends).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from functools import cache
from typing import Any

from opentelemetry import metrics, propagate, trace
from opentelemetry.context import Context
from opentelemetry.metrics import CallbackOptions, Observation

log = logging.getLogger(__name__)


# The distro attaches its OpenTelemetry log handler to this logger: the root, so every logger of
# both apps (function_app.*, session_host.*, callplane.*) reaches Application Insights; the SDKs'
# own loggers are held at WARNING by setup_logging.
EXPORTED_LOGGER = ""


class _Redacting(logging.Filter):
    """For the exporter: the message rendered and redacted (phone numbers, emails) and every
    extra redacted, before the OpenTelemetry handler turns them into attributes; the call id
    stays an attribute of its own (`call_id`), a dimension to query by."""

    def filter(self, record: logging.LogRecord) -> bool:
        from callplane.redact import redact, redact_value

        record.msg, record.args = redact(record.getMessage()), None
        for key, value in list(vars(record).items()):
            if key not in _STD_RECORD and key != "call_id":
                setattr(record, key, redact_value(value))
        return True


_STD_RECORD = set(vars(logging.makeLogRecord({})).keys()) | {"message", "asctime", "taskName"}


def redact_exported_logs(handler: logging.Handler) -> logging.Handler:
    handler.addFilter(_Redacting())
    return handler


@cache  # the exporters are process-wide: install them once, whoever asks again
def configure(connection_string: str, service_name: str, client_id: str = "") -> bool:
    """Install the Azure Monitor exporters once per process. True when telemetry is exported.

    With `client_id` (the user-assigned identity's, AZURE_CLIENT_ID in Azure) telemetry is sent
    with Entra auth: the component has local (key) auth disabled, so without a credential every
    export would be refused."""
    if not connection_string:
        return False
    from azure.monitor.opentelemetry import configure_azure_monitor
    from opentelemetry.sdk.resources import Resource

    extra: dict[str, Any] = {}
    if client_id:
        from azure.identity import ManagedIdentityCredential

        extra["credential"] = ManagedIdentityCredential(client_id=client_id)
    configure_azure_monitor(
        **extra,
        connection_string=connection_string,
        resource=Resource.create({"service.name": service_name}),
        logger_name=EXPORTED_LOGGER,
    )
    for handler in logging.getLogger(EXPORTED_LOGGER).handlers:
        if type(handler).__name__ == "LoggingHandler":
            redact_exported_logs(handler)
    log.info("telemetry exported to Application Insights as %s", service_name)
    return True


class Telemetry:
    def __init__(self, tracer_provider: Any = None, meter_provider: Any = None) -> None:
        self.tracer = (tracer_provider or trace.get_tracer_provider()).get_tracer("voice-agent")
        meter = (meter_provider or metrics.get_meter_provider()).get_meter("voice-agent")
        self._meter = meter
        self.turn_latency = meter.create_histogram(
            "voice.turn_latency", unit="ms", description="caller stops speaking -> first assistant output"
        )
        self.tool_duration = meter.create_histogram("voice.tool_duration", unit="ms")
        self.webhook_outcomes = meter.create_counter("voice.webhook_outcomes")
        self.errors = meter.create_counter("voice.errors")
        self.calls_started = meter.create_counter("voice.calls_started")
        # What the model costs, as it is spent (an alert on the hourly sum catches a runaway).
        self.tokens = meter.create_counter("voice.tokens", description="Realtime model tokens (response.done usage)")
        self.cost = meter.create_counter("voice.cost_usd", unit="USD", description="model tokens at PRICES")

    def observe_active_calls(self, count: Callable[[], int]) -> None:
        def callback(_: CallbackOptions) -> Iterable[Observation]:
            yield Observation(count())

        self._meter.create_observable_gauge(
            "voice.active_calls", callbacks=[callback], description="live calls on this replica"
        )

    @staticmethod
    def inject(headers: dict[str, str], context: Context | None = None) -> dict[str, str]:
        propagate.inject(headers, context=context)
        return headers

    @staticmethod
    def extract(headers: Mapping[str, str]) -> Context:
        return propagate.extract(dict(headers))
