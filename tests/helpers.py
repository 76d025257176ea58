"""Builders for the core's positional records, and helpers for subprocess tests.

The tuple layouts are those of ``_core.pyi``; the request record is built by the shim's own builder
(``_records.request_record``). The builders here give every field a readable default so a test only
spells out what it is about.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap
from typing import Any

from opentelemetry.instrumentation.vllm import _core, _records

# 2023-11-14T22:13:20Z: a fixed, recognisable timestamp.
T0 = 1_700_000_000_000_000_000
MS = 1_000_000

# Spans and metrics are exported only when a test flushes (or shuts down).
QUIET_SETTINGS = {
    "OTEL_METRIC_EXPORT_INTERVAL": "600000",
    "OTEL_BSP_SCHEDULE_DELAY": "600000",
    "OTEL_EXPORTER_OTLP_TIMEOUT": "5000",
}

# The same as instrument() arguments.
QUIET_ARGUMENTS = {"schedule_delay_ms": 600000, "metric_export_interval_ms": 600000}

# opentelemetry.trace.SpanKind values -> OTLP Span.SpanKind values.
SPAN_KIND_INTERNAL, SPAN_KIND_SERVER, SPAN_KIND_CLIENT, SPAN_KIND_PRODUCER, SPAN_KIND_CONSUMER = 0, 1, 2, 3, 4


def batch_header(
    *,
    operation: str = "text_completion",
    provider: str = "vllm",
    request_model: str | None = "tiny",
    response_model: str | None = "tiny",
    parent: tuple[int, int, int, bool] | None = None,
    span_kind: int = SPAN_KIND_INTERNAL,
    attributes: dict[str, Any] | None = None,
) -> tuple:
    header = (operation, provider, request_model, response_model, parent, span_kind, attributes)
    assert len(header) == _core.BATCH_HEADER_LEN
    return header


def request_record(
    *,
    response_id: str | None = "cmpl-1",
    span_id: int | None = None,
    start_ns: int = T0,
    end_ns: int = T0 + 250 * MS,
    input_tokens: int | None = 12,
    output_tokens: int | None = 32,
    cached_input_tokens: int | None = 4,
    finish_reasons: list[str] | tuple[str, ...] | None = ("stop",),
    error_type: str | None = None,
    ttft: float | None = 0.04,
    tpot: float | None = 0.007,
    queue: float | None = 0.002,
    prefill: float | None = 0.03,
    decode: float | None = 0.2,
    inference: float | None = 0.23,
    e2e: float | None = 0.25,
    attributes: dict[str, Any] | None = None,
) -> tuple:
    record = _records.request_record(
        response_id,
        span_id,
        start_ns,
        end_ns,
        input_tokens,
        output_tokens,
        cached_input_tokens,
        finish_reasons,
        error_type,
        ttft,
        tpot,
        queue,
        prefill,
        decode,
        inference,
        e2e,
        attributes,
    )
    assert len(record) == _core.REQUEST_RECORD_LEN
    return record


NO_TIMINGS = dict(ttft=None, tpot=None, queue=None, prefill=None, decode=None, inference=None, e2e=None)


def operation_record(
    context: tuple[int, int, int],
    *,
    parent: tuple[int, int, int, bool] | None = None,
    operation: str = "text_completion",
    provider: str = "vllm",
    request_model: str | None = "tiny",
    response_model: str | None = "tiny",
    span_kind: int = SPAN_KIND_INTERNAL,
    start_ns: int = T0 - 10 * MS,
    end_ns: int = T0 + 300 * MS,
    error_type: str | None = None,
    request_count: int | None = 1,
    attributes: dict[str, Any] | None = None,
) -> tuple:
    record = (
        context,
        parent,
        operation,
        provider,
        request_model,
        response_model,
        span_kind,
        start_ns,
        end_ns,
        error_type,
        request_count,
        attributes,
    )
    assert len(record) == _core.OPERATION_RECORD_LEN
    return record


def as_parent(context: tuple[int, int, int], is_remote: bool = False) -> tuple[int, int, int, bool]:
    """A context reserved with ``new_span_context`` in the parent form a batch header takes."""
    trace_id, span_id, flags = context
    return (trace_id, span_id, flags, is_remote)


def closed_port() -> int:
    """A local port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def clean_environment(**extra: str) -> dict[str, str]:
    """This process's environment without any OTEL_* variable, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    env.update(extra)
    return env


# Prepended to every subprocess script: the builders, importable without the tests directory.
SCRIPT_PRELUDE = f"""
import os, sys
sys.path.insert(0, {os.path.dirname(os.path.abspath(__file__))!r})
from helpers import T0, MS, batch_header, request_record, operation_record, as_parent
from opentelemetry.instrumentation.vllm import _core
"""


def run_python(script: str, env: dict[str, str], timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    """Runs ``script`` in a fresh interpreter; ``timeout`` guards against a hang at exit."""
    return subprocess.run(
        [sys.executable, "-c", SCRIPT_PRELUDE + textwrap.dedent(script)],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
