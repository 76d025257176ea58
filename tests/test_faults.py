"""Collector faults: stalled, slow, answering errors, restarted. Telemetry never hurts the caller.

Each test runs against a real loopback receiver (HTTP or gRPC) that it holds, misconfigures, stops
and starts. What a user would see is asserted: the calls into the instrumentation return, nothing
raises, the stats count what was lost, and export resumes once the collector is back.
"""

from __future__ import annotations

import logging

import grpc
import pytest
from helpers import batch_header, operation_record, request_record
from opentelemetry.instrumentation.vllm import _core
from otlp_receivers import GrpcReceiver, HttpReceiver

LOGGER = "opentelemetry.instrumentation.vllm"
SECRET = "s3cr3t-t0ken-value"
PROTOCOLS = ["http", "grpc"]


@pytest.fixture(params=PROTOCOLS)
def collector(request):
    """A running receiver of the parametrised protocol; the pipeline is shut down before it stops."""
    receiver = HttpReceiver() if request.param == "http" else GrpcReceiver()
    with receiver:
        yield receiver
        receiver.release()
        if _core.is_enabled():
            _core.shutdown(5.0)


def trace_exports(receiver) -> int:
    if isinstance(receiver, HttpReceiver):
        return len(receiver.requests_to("/v1/traces"))
    return len(receiver.requests_for("traces"))


def response_ids(receiver) -> set[str]:
    return {s.attributes["gen_ai.response.id"] for s in receiver.spans() if "gen_ai.response.id" in s.attributes}


def records(prefix: str, n: int) -> list[tuple]:
    return [request_record(response_id=f"{prefix}-{i}") for i in range(n)]


def test_a_stalled_collector_never_blocks_the_caller(pipeline, collector):
    collector.hold()  # every export is received, then left unanswered until release()
    assert pipeline(collector, {"OTEL_EXPORTER_OTLP_TIMEOUT": "30000"})
    assert _core.record_requests(batch_header(), records("first", 1)) == 1
    # force_flush waits for the export, which the collector holds: it gives up after its timeout.
    assert _core.force_flush(0.3) is False
    assert collector.wait_for(lambda r: trace_exports(r) >= 1), "the export is in flight"

    # While that export hangs, every call of the application's thread completes.
    for batch in range(50):
        assert _core.record_requests(batch_header(), records(f"b{batch}", 10)) == 10
    context = _core.new_span_context(None, "text_completion", "tiny")
    assert _core.record_operation(operation_record(context))
    stats = _core.stats()
    assert stats["requests_recorded"] == 501
    assert stats["operations_recorded"] == 1
    assert stats["requests_dropped"] == stats["spans_dropped"] == 0
    assert stats["spans_exported"] == 0

    collector.release()
    assert _core.force_flush(10.0)
    stats = _core.stats()
    assert stats["spans_exported"] == 502
    assert stats["spans_export_failed"] == 0
    assert len(response_ids(collector)) == 501


ERROR_ANSWERS = {"http": 503, "grpc": grpc.StatusCode.UNAVAILABLE}
OK_ANSWERS = {"http": 200, "grpc": None}


def test_error_answers_are_counted_and_export_resumes_when_the_collector_recovers(
    pipeline, collector, caplog, monkeypatch, fresh_core_warnings
):
    protocol = "http" if isinstance(collector, HttpReceiver) else "grpc"
    caplog.set_level(logging.WARNING, logger=LOGGER)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_HEADERS", f"authorization=Bearer%20{SECRET},x-api-key={SECRET}")
    collector.status = ERROR_ANSWERS[protocol]  # retryable: the exporter retries until its timeout
    assert pipeline(collector, {"OTEL_EXPORTER_OTLP_TIMEOUT": "500"})
    assert _core.record_requests(batch_header(), records("during", 3)) == 3
    assert _core.force_flush(5.0) is False
    stats = _core.stats()
    assert stats["spans_export_failed"] == 3
    assert stats["spans_exported"] == 0
    assert stats["metric_exports_failed"] >= 1
    assert trace_exports(collector) >= 1, "the collector was reached and answered with an error"
    messages = [r.getMessage() for r in caplog.records]
    assert any("spans failed" in m for m in messages), messages
    assert all(SECRET not in m for m in messages)

    collector.status = OK_ANSWERS[protocol]
    assert _core.record_requests(batch_header(), records("after", 2)) == 2
    assert _core.force_flush(5.0)
    stats = _core.stats()
    assert stats["spans_exported"] == 2
    assert stats["spans_export_failed"] == 3
    assert stats["metric_exports"] >= 1
    assert {"after-0", "after-1"} <= response_ids(collector)


def test_a_collector_restarted_mid_run_gets_what_is_recorded_once_it_is_back(pipeline, collector):
    assert pipeline(collector, {"OTEL_EXPORTER_OTLP_TIMEOUT": "1000"})
    assert _core.record_requests(batch_header(), records("before", 2)) == 2
    assert _core.force_flush(5.0)
    assert response_ids(collector) == {"before-0", "before-1"}

    collector.stop()
    assert _core.record_requests(batch_header(), records("down", 2)) == 2
    assert _core.force_flush(5.0) is False
    stats = _core.stats()
    assert (stats["spans_exported"], stats["spans_export_failed"]) == (2, 2)
    assert stats["metric_exports_failed"] >= 1

    collector.start()  # the same port
    assert _core.record_requests(batch_header(), records("back", 2)) == 2
    assert _core.force_flush(5.0)
    stats = _core.stats()
    assert (stats["spans_exported"], stats["spans_export_failed"]) == (4, 2)
    assert response_ids(collector) == {"before-0", "before-1", "back-0", "back-1"}


def test_an_answer_later_than_the_export_timeout_is_a_counted_failure(pipeline, collector):
    collector.hold()
    assert pipeline(collector, {"OTEL_EXPORTER_OTLP_TIMEOUT": "300"})
    assert _core.record_requests(batch_header(), records("late", 2)) == 2
    assert _core.force_flush(5.0) is False  # the exporter gave up after 300 ms
    stats = _core.stats()
    assert (stats["spans_exported"], stats["spans_export_failed"]) == (0, 2)

    collector.release()
    assert _core.record_requests(batch_header(), records("in-time", 1)) == 1
    assert _core.force_flush(5.0)
    assert _core.stats()["spans_exported"] == 1
    assert "in-time-0" in response_ids(collector)
