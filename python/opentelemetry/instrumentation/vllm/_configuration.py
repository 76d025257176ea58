"""Turns ``instrument(...)`` arguments into the configuration the Rust core resolves.

Each argument overrides one OTEL_* variable; the core applies argument > environment > default
for all of them in one place (``src/config.rs``). Resource attributes travel separately because
they merge rather than override.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

_logger = logging.getLogger("opentelemetry.instrumentation.vllm")

# argument -> the variable it overrides
VARIABLE_OF_ARGUMENT: dict[str, str] = {
    "disabled": "OTEL_SDK_DISABLED",
    "traces_exporter": "OTEL_TRACES_EXPORTER",
    "metrics_exporter": "OTEL_METRICS_EXPORTER",
    "endpoint": "OTEL_EXPORTER_OTLP_ENDPOINT",
    "traces_endpoint": "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    "metrics_endpoint": "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT",
    "protocol": "OTEL_EXPORTER_OTLP_PROTOCOL",
    "headers": "OTEL_EXPORTER_OTLP_HEADERS",
    "timeout_ms": "OTEL_EXPORTER_OTLP_TIMEOUT",
    "compression": "OTEL_EXPORTER_OTLP_COMPRESSION",
    "certificate": "OTEL_EXPORTER_OTLP_CERTIFICATE",
    "client_key": "OTEL_EXPORTER_OTLP_CLIENT_KEY",
    "client_certificate": "OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE",
    "sampler": "OTEL_TRACES_SAMPLER",
    "sampler_arg": "OTEL_TRACES_SAMPLER_ARG",
    "max_queue_size": "OTEL_BSP_MAX_QUEUE_SIZE",
    "max_export_batch_size": "OTEL_BSP_MAX_EXPORT_BATCH_SIZE",
    "schedule_delay_ms": "OTEL_BSP_SCHEDULE_DELAY",
    "metric_export_interval_ms": "OTEL_METRIC_EXPORT_INTERVAL",
    "temporality": "OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE",
    "latency_summary": "OTEL_INSTRUMENTATION_VLLM_LATENCY_SUMMARY",
    # The GenAI conventions: "gen_ai_latest_experimental" (in this comma-separated list) for the latest.
    "semconv_stability_opt_in": "OTEL_SEMCONV_STABILITY_OPT_IN",
}
SHUTDOWN_TIMEOUT_VARIABLE = "OTEL_INSTRUMENTATION_VLLM_SHUTDOWN_TIMEOUT"
DEFAULT_SHUTDOWN_TIMEOUT_MS = 5000
# Arguments BaseInstrumentor users pass that are not configuration of the core.
PROVIDER_ARGUMENTS = ("tracer_provider", "meter_provider", "logger_provider")
RESOURCE_ARGUMENTS = ("service_name", "resource_attributes", "shutdown_timeout_ms")
# Arguments the Python shim reads itself (content capture, delivery mode).
SHIM_ARGUMENTS = ("capture_message_content", "content_max_length", "delivery")


def _as_variable_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Mapping):
        # The W3C-baggage-like form of OTEL_EXPORTER_OTLP_HEADERS, values percent-encoded.
        return ",".join(f"{quote(str(k), safe='')}={quote(str(v), safe='')}" for k, v in value.items())
    return str(value)


def overrides_from_arguments(arguments: Mapping[str, Any]) -> dict[str, str]:
    overrides: dict[str, str] = {}
    for name, value in arguments.items():
        if value is None or name in PROVIDER_ARGUMENTS or name in RESOURCE_ARGUMENTS or name in SHIM_ARGUMENTS:
            continue
        variable = VARIABLE_OF_ARGUMENT.get(name)
        if variable is None:
            _logger.warning("instrument(): unknown argument %r ignored", name)
            continue
        overrides[variable] = _as_variable_text(value)
    return overrides


def explicit_resource(arguments: Mapping[str, Any]) -> dict[str, Any]:
    attributes = dict(arguments.get("resource_attributes") or {})
    if arguments.get("service_name"):
        attributes["service.name"] = arguments["service_name"]
    return attributes


def python_sdk_resource(tracer_provider: Any = None) -> dict[str, Any]:
    """Resource attributes of the application's Python SDK TracerProvider, if it has one."""
    if tracer_provider is None:
        from opentelemetry import trace

        tracer_provider = trace.get_tracer_provider()
    resource = getattr(tracer_provider, "resource", None)
    attributes = getattr(resource, "attributes", None)
    return dict(attributes) if attributes else {}


def shutdown_timeout_seconds(arguments: Mapping[str, Any]) -> float:
    value = arguments.get("shutdown_timeout_ms")
    if value is None:
        value = os.environ.get(SHUTDOWN_TIMEOUT_VARIABLE, "").strip() or DEFAULT_SHUTDOWN_TIMEOUT_MS
    try:
        return max(0.0, float(value) / 1000.0)
    except (TypeError, ValueError):
        _logger.warning("invalid value for %s; using %d ms", SHUTDOWN_TIMEOUT_VARIABLE, DEFAULT_SHUTDOWN_TIMEOUT_MS)
        return DEFAULT_SHUTDOWN_TIMEOUT_MS / 1000.0
