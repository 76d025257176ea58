"""Back-pressure and export failures: counted in the stats, logged without secrets, never raised."""

from __future__ import annotations

import logging

import pytest
from helpers import batch_header, closed_port, request_record
from opentelemetry.instrumentation.vllm import _core
from otlp_receivers import HttpReceiver

LOGGER = "opentelemetry.instrumentation.vllm"
SECRET = "s3cr3t-t0ken-value"


@pytest.fixture
def stalled_receiver():
    """A collector that answers nothing until the test releases it."""
    with HttpReceiver(delay=60.0) as receiver:
        yield receiver
        receiver.release()
        if _core.is_enabled():
            _core.shutdown(5.0)


def test_a_full_span_queue_drops_and_counts_spans(pipeline, stalled_receiver):
    # The recorder thread waits a little for a full span queue to drain, then drops (and counts)
    # spans while the exporter makes no progress; the caller never waits.
    overrides = {"OTEL_BSP_MAX_QUEUE_SIZE": "8", "OTEL_BSP_MAX_EXPORT_BATCH_SIZE": "8"}
    assert pipeline(stalled_receiver, overrides)
    records = [request_record(response_id=str(i)) for i in range(200)]
    assert _core.record_requests(batch_header(), records) == 200
    stats = _core.stats()  # waits until the recorder has turned every request into a span
    assert stats["requests_recorded"] == 200
    assert stats["requests_dropped"] == 0
    assert stats["spans_dropped"] > 0
    assert stats["spans_queued"] + stats["spans_dropped"] == 200
    assert stats["spans_queued"] >= 8
    # Metrics do not depend on the span queue: every request is in them.
    (row,) = [r for r in _core.latency_percentiles() if r["metric"] == "gen_ai.server.request.duration"]
    assert row["count"] == 200

    stalled_receiver.release()
    assert _core.force_flush(5.0)
    stats = _core.stats()
    assert stats["spans_exported"] == stats["spans_queued"]
    assert len(stalled_receiver.spans()) == stats["spans_queued"]
    # Once the exporter makes progress again, nothing more is dropped.
    assert _core.record_requests(batch_header(), records[:8]) == 8
    assert _core.force_flush(5.0)
    assert _core.stats()["spans_dropped"] == stats["spans_dropped"]


def test_a_slow_exporter_delays_spans_without_dropping_them(pipeline):
    with HttpReceiver(delay=0.2) as slow:
        overrides = {"OTEL_BSP_MAX_QUEUE_SIZE": "8", "OTEL_BSP_MAX_EXPORT_BATCH_SIZE": "8"}
        assert pipeline(slow, overrides)
        assert _core.record_requests(batch_header(), [request_record()] * 24) == 24
        stats = _core.stats()
        assert (stats["spans_queued"], stats["spans_dropped"]) == (24, 0)
        assert _core.force_flush(5.0)
        assert len(slow.spans()) == 24
        _core.shutdown(5.0)


def test_export_to_a_closed_port_fails_counted_and_logged_without_secrets(
    pipeline, caplog, monkeypatch, fresh_core_warnings
):
    caplog.set_level(logging.WARNING, logger=LOGGER)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_HEADERS", f"authorization=Bearer%20{SECRET},x-api-key={SECRET}")
    overrides = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{closed_port()}",
        "OTEL_EXPORTER_OTLP_TIMEOUT": "500",
    }
    assert pipeline(None, overrides)
    assert _core.record_requests(batch_header(), [request_record()] * 3) == 3
    assert _core.force_flush(5.0) in (True, False)
    stats = _core.stats()
    assert stats["spans_export_failed"] == 3
    assert stats["spans_exported"] == 0
    assert stats["metric_exports_failed"] >= 1
    messages = [r.getMessage() for r in caplog.records if r.name == LOGGER]
    assert any("spans failed" in m for m in messages), messages
    assert any("metrics failed" in m for m in messages), messages
    assert all(SECRET not in m for m in messages)
    assert all(SECRET not in r.getMessage() for r in caplog.records)
    assert _core.shutdown(5.0) in (True, False)


def test_an_error_status_from_the_collector_counts_as_failed(pipeline):
    # 500 rather than 503: the OTLP exporter retries 429/502/503/504 with back-off, which only costs time here.
    with HttpReceiver(status=500) as receiver:
        assert pipeline(receiver)
        assert _core.record_requests(batch_header(), [request_record()] * 2) == 2
        assert _core.force_flush(5.0) is False
        stats = _core.stats()
        assert stats["spans_export_failed"] == 2
        assert stats["metric_exports_failed"] >= 1
        assert stats["spans_exported"] == 0
        assert {r.path for r in receiver.requests} >= {"/v1/traces", "/v1/metrics"}
        _core.shutdown(5.0)


def test_recording_never_raises_while_exports_fail(pipeline):
    overrides = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{closed_port()}",
        "OTEL_EXPORTER_OTLP_TIMEOUT": "200",
        "OTEL_METRICS_EXPORTER": "none",
    }
    assert pipeline(None, overrides)
    for _ in range(5):
        assert _core.record_requests(batch_header(), [request_record()] * 10) == 10
    _core.force_flush(2.0)
    assert _core.record_requests(batch_header(), [request_record()] * 10) == 10
    assert _core.stats()["requests_recorded"] == 60
