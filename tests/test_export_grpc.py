"""OTLP/gRPC transport: spans, metrics and metadata arrive at a grpcio TraceService/MetricsService."""

from __future__ import annotations

from helpers import MS, T0, as_parent, batch_header, operation_record, request_record
from opentelemetry.instrumentation.vllm import _core
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status


def test_spans_metrics_and_metadata_arrive_over_grpc(pipeline, grpc_receiver, monkeypatch):
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_HEADERS", "api-key=s3cr%3Dt,X-Tenant=team-a")
    monkeypatch.setenv("OTEL_SERVICE_NAME", "grpc-service")
    assert pipeline(grpc_receiver)
    operation = _core.new_span_context(None, "text_completion", "tiny")
    records = [
        request_record(response_id="ok", start_ns=T0, end_ns=T0 + 100 * MS, e2e=0.1),
        request_record(response_id="bad", error_type="RuntimeError", e2e=0.3),
    ]
    assert _core.record_requests(batch_header(parent=as_parent(operation)), records) == 2
    assert _core.record_operation(operation_record(operation, request_count=2))
    assert _core.force_flush(5.0)

    assert {r.service for r in grpc_receiver.requests} == {"traces", "metrics"}
    for request in grpc_receiver.requests:
        assert request.metadata["api-key"] == "s3cr=t"
        # gRPC metadata keys are lower case.
        assert request.metadata["x-tenant"] == "team-a"

    spans = {s.span_id: s for s in grpc_receiver.spans()}
    assert len(spans) == 3
    op = spans[operation[1]]
    assert op.name == "text_completion tiny"
    assert op.span.kind == Span.SPAN_KIND_INTERNAL
    requests = {s.attributes["gen_ai.response.id"]: s for s in spans.values() if s is not op}
    assert {r.parent_span_id for r in requests.values()} == {operation[1]}
    assert requests["ok"].span.start_time_unix_nano == T0
    assert requests["ok"].span.end_time_unix_nano == T0 + 100 * MS
    assert requests["bad"].span.status.code == Status.STATUS_CODE_ERROR
    assert requests["bad"].span.status.message == "RuntimeError"
    assert all(s.resource["service.name"] == "grpc-service" for s in spans.values())
    assert all(s.resource["telemetry.sdk.language"] == "rust" for s in spans.values())

    metrics = {m.name: m for m in grpc_receiver.latest_metrics()}
    duration = metrics["gen_ai.server.request.duration"]
    points = zip(duration.point_attributes(), duration.points, strict=True)
    by_error = {attributes.get("error.type"): point for attributes, point in points}
    assert by_error[None].count == 1 and by_error[None].sum == 0.1
    assert by_error["RuntimeError"].count == 1 and by_error["RuntimeError"].sum == 0.3
    assert metrics["gen_ai.client.operation.duration"].points[0].count == 1
    assert duration.resource["service.name"] == "grpc-service"
    stats = _core.stats()
    assert stats["spans_exported"] == 3
    assert stats["spans_export_failed"] == 0
    assert stats["metric_exports"] >= 1


def test_grpc_with_gzip_compression(pipeline, grpc_receiver):
    assert pipeline(grpc_receiver, {"OTEL_EXPORTER_OTLP_COMPRESSION": "gzip"})
    assert _core.record_requests(batch_header(), [request_record(response_id="gz")]) == 1
    assert _core.force_flush(5.0)
    (span,) = grpc_receiver.spans()
    assert span.attributes["gen_ai.response.id"] == "gz"
    assert "gen_ai.server.request.duration" in {m.name for m in grpc_receiver.metrics()}


def test_grpc_for_traces_and_http_for_metrics(pipeline, grpc_receiver, http_receiver):
    overrides = {
        "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "grpc",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": grpc_receiver.endpoint,
        "OTEL_EXPORTER_OTLP_ENDPOINT": http_receiver.endpoint,
    }
    assert pipeline(None, overrides)
    assert _core.record_requests(batch_header(), [request_record()]) == 1
    assert _core.force_flush(5.0)
    assert [s.name for s in grpc_receiver.spans()] == ["text_completion tiny"]
    assert {r.service for r in grpc_receiver.requests} == {"traces"}
    assert [r.path for r in http_receiver.requests] == ["/v1/metrics"]


def test_grpc_headers_override_beats_the_environment(pipeline, grpc_receiver, monkeypatch):
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_HEADERS", "api-key=from-env,x-env-only=1")
    assert pipeline(grpc_receiver, {"OTEL_EXPORTER_OTLP_HEADERS": "api-key=from-argument"})
    assert _core.record_requests(batch_header(), [request_record()]) == 1
    assert _core.force_flush(5.0)
    assert {r.service for r in grpc_receiver.requests} == {"traces", "metrics"}
    for request in grpc_receiver.requests:
        assert request.metadata["api-key"] == "from-argument"
        assert "x-env-only" not in request.metadata
