"""OTLP/HTTP transport: paths, headers, compression, JSON, signal-specific settings, batching, schedules."""

from __future__ import annotations

import pytest
from helpers import batch_header, closed_port, request_record
from opentelemetry.instrumentation.vllm import _core
from otlp_receivers import HttpReceiver


def record_and_flush(n: int = 1) -> None:
    assert _core.record_requests(batch_header(), [request_record(response_id=f"cmpl-{i}") for i in range(n)]) == n
    assert _core.force_flush(5.0)


def test_protobuf_requests_go_to_the_signal_paths(pipeline, http_receiver):
    assert pipeline(http_receiver)
    record_and_flush()
    assert sorted({r.path for r in http_receiver.requests}) == ["/v1/metrics", "/v1/traces"]
    for request in http_receiver.requests:
        assert request.headers["content-type"] == "application/x-protobuf"
        assert "content-encoding" not in request.headers
        assert request.decode_error is None
    assert [s.name for s in http_receiver.spans()] == ["text_completion tiny"]
    assert "gen_ai.server.request.duration" in {m.name for m in http_receiver.metrics()}


def test_headers_from_the_environment_arrive_percent_decoded(pipeline, http_receiver, monkeypatch):
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_HEADERS", "api-key=s3cr%3Dt , x-tenant=team%20a,authorization=Basic abc==")
    assert pipeline(http_receiver)
    record_and_flush()
    assert {r.path for r in http_receiver.requests} == {"/v1/traces", "/v1/metrics"}
    for request in http_receiver.requests:
        assert request.headers["api-key"] == "s3cr=t"
        assert request.headers["x-tenant"] == "team a"
        assert request.headers["authorization"] == "Basic abc=="


def test_headers_override_arrives(pipeline, http_receiver):
    assert pipeline(http_receiver, {"OTEL_EXPORTER_OTLP_HEADERS": "api-key=from-argument,x-tenant=a%2Cb"})
    record_and_flush()
    assert len(http_receiver.requests) == 2
    for request in http_receiver.requests:
        assert request.headers["api-key"] == "from-argument"
        assert request.headers["x-tenant"] == "a,b"


def test_headers_override_beats_the_environment(pipeline, http_receiver, monkeypatch):
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_HEADERS", "api-key=from-env,x-env-only=1")
    assert pipeline(http_receiver, {"OTEL_EXPORTER_OTLP_HEADERS": "api-key=from-argument"})
    record_and_flush()
    for request in http_receiver.requests:
        assert request.headers["api-key"] == "from-argument"
        assert "x-env-only" not in request.headers


def test_signal_specific_headers_beat_the_generic_ones(pipeline, http_receiver, monkeypatch):
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_HEADERS", "x-which=generic")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_HEADERS", "x-which=traces")
    assert pipeline(http_receiver)
    record_and_flush()
    (traces,) = http_receiver.requests_to("/v1/traces")
    (metrics,) = http_receiver.requests_to("/v1/metrics")
    assert traces.headers["x-which"] == "traces"
    assert metrics.headers["x-which"] == "generic"


def test_gzip_compression(pipeline, http_receiver, monkeypatch):
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_COMPRESSION", "gzip")
    assert pipeline(http_receiver)
    record_and_flush()
    assert {r.path for r in http_receiver.requests} == {"/v1/traces", "/v1/metrics"}
    for request in http_receiver.requests:
        assert request.headers["content-encoding"] == "gzip"
        assert request.raw_body[:2] == b"\x1f\x8b"
        assert request.raw_body != request.body
        assert request.decode_error is None and request.decoded is not None
    (span,) = http_receiver.spans()
    assert span.attributes["gen_ai.response.id"] == "cmpl-0"
    assert http_receiver.metrics()


@pytest.mark.xfail(
    reason="known limitation (README, Configuration): opentelemetry-otlp reads OTEL_EXPORTER_OTLP_COMPRESSION "
    "itself when the builder is given no compression, and has no way to be told 'none', so compression='none' "
    "(argument) cannot turn off gzip set in the environment",
    strict=True,
)
def test_compression_override_beats_the_environment(pipeline, http_receiver, monkeypatch):
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_COMPRESSION", "gzip")
    assert pipeline(http_receiver, {"OTEL_EXPORTER_OTLP_COMPRESSION": "none"})
    record_and_flush()
    assert len(http_receiver.requests) == 2
    for request in http_receiver.requests:
        assert "content-encoding" not in request.headers


def test_signal_specific_compression(pipeline, http_receiver):
    assert pipeline(http_receiver, {"OTEL_EXPORTER_OTLP_METRICS_COMPRESSION": "gzip"})
    record_and_flush()
    (traces,) = http_receiver.requests_to("/v1/traces")
    (metrics,) = http_receiver.requests_to("/v1/metrics")
    assert "content-encoding" not in traces.headers
    assert metrics.headers["content-encoding"] == "gzip"
    assert metrics.decoded is not None


def test_signal_specific_endpoints_are_used_verbatim(pipeline, http_receiver):
    with HttpReceiver() as metrics_receiver:
        overrides = {
            # A signal-specific endpoint is the full URL; the generic one is a base for the path.
            "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{closed_port()}",
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": f"{http_receiver.endpoint}/custom/traces",
            "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT": f"{metrics_receiver.endpoint}/v1/metrics",
        }
        assert pipeline(None, overrides)
        record_and_flush()
        assert [r.path for r in http_receiver.requests] == ["/custom/traces"]
        assert [r.path for r in metrics_receiver.requests] == ["/v1/metrics"]
        _core.shutdown(5.0)  # before metrics_receiver stops


def test_generic_endpoint_with_a_trailing_slash(pipeline, http_receiver):
    assert pipeline(http_receiver, {"OTEL_EXPORTER_OTLP_ENDPOINT": http_receiver.endpoint + "/"})
    record_and_flush()
    assert sorted(r.path for r in http_receiver.requests) == ["/v1/metrics", "/v1/traces"]


def test_http_json_protocol(pipeline, http_receiver):
    assert pipeline(http_receiver, {"OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"})
    operation = _core.new_span_context(None, "text_completion", "tiny")
    header = batch_header(parent=(operation[0], operation[1], operation[2], False))
    assert _core.record_requests(header, [request_record(response_id="json-1")]) == 1
    assert _core.force_flush(5.0)
    for request in http_receiver.requests:
        assert request.headers["content-type"] == "application/json"
        assert request.decode_error is None, request.decode_error
    (span,) = http_receiver.spans()
    assert span.name == "text_completion tiny"
    assert span.trace_id == operation[0]
    assert span.parent_span_id == operation[1]
    assert span.typed_attributes["gen_ai.usage.input_tokens"] == ("int_value", 12)
    assert span.typed_attributes["gen_ai.latency.e2e"] == ("double_value", 0.25)
    (duration,) = [m for m in http_receiver.metrics() if m.name == "gen_ai.server.request.duration"]
    (point,) = duration.points
    assert (point.count, point.sum) == (1, 0.25)


def test_max_export_batch_size_splits_exports(pipeline, http_receiver):
    assert pipeline(http_receiver, {"OTEL_BSP_MAX_EXPORT_BATCH_SIZE": "2"})
    record_and_flush(5)
    sizes = [len(r.resource_spans[0].scope_spans[0].spans) for r in http_receiver.trace_requests()]
    assert sum(sizes) == 5
    assert max(sizes) <= 2
    assert sorted(s.attributes["gen_ai.response.id"] for s in http_receiver.spans()) == [f"cmpl-{i}" for i in range(5)]


def test_short_schedules_export_without_a_flush(pipeline, http_receiver):
    assert pipeline(http_receiver, {"OTEL_BSP_SCHEDULE_DELAY": "50", "OTEL_METRIC_EXPORT_INTERVAL": "100"})
    assert _core.record_requests(batch_header(), [request_record()]) == 1
    assert http_receiver.wait_for(lambda r: r.spans() and r.metrics(), timeout=10.0)
    assert [s.name for s in http_receiver.spans()] == ["text_completion tiny"]
