"""Metrics as a collector receives them: names, units, semconv bucket boundaries, points per attribute set."""

from __future__ import annotations

import pytest
from helpers import MS, NO_TIMINGS, T0, batch_header, operation_record, request_record
from opentelemetry.instrumentation.vllm import _core
from opentelemetry.proto.metrics.v1.metrics_pb2 import AggregationTemporality

# Semantic conventions v1.41 (the GenAI metrics), as src/telemetry/semconv.rs must declare them.
DURATION_BUCKETS = [0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92]
TTFT_BUCKETS = [0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0]
TPOT_BUCKETS = [0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5]
TOKEN_BUCKETS = [float(4**i) for i in range(14)]  # 1, 4, 16, ..., 67108864

# name -> (unit, explicit bounds)
HISTOGRAMS = {
    "gen_ai.server.time_to_first_token": ("s", TTFT_BUCKETS),
    "gen_ai.server.time_per_output_token": ("s", TPOT_BUCKETS),
    "gen_ai.server.request.duration": ("s", DURATION_BUCKETS),
    "gen_ai.client.operation.duration": ("s", DURATION_BUCKETS),
    "gen_ai.client.token.usage": ("{token}", TOKEN_BUCKETS),
    "vllm.request.queue.duration": ("s", TTFT_BUCKETS),
    "vllm.request.prefill.duration": ("s", TTFT_BUCKETS),
    "vllm.request.decode.duration": ("s", DURATION_BUCKETS),
    "vllm.request.inference.duration": ("s", DURATION_BUCKETS),
}

BASE = {
    "gen_ai.operation.name": "text_completion",
    "gen_ai.provider.name": "vllm",
    "gen_ai.request.model": "tiny",
    "gen_ai.response.model": "tiny",
}


def frozen(attributes: dict) -> frozenset:
    return frozenset(attributes.items())


def flushed_metrics(receiver) -> dict:
    """name -> ReceivedMetric of the last export."""
    assert _core.force_flush(5.0)
    metrics = receiver.latest_metrics()
    names = [m.name for m in metrics]
    assert len(names) == len(set(names)), names
    return {m.name: m for m in metrics}


def points_by_attributes(metric) -> dict:
    return {frozen(a): p for a, p in zip(metric.point_attributes(), metric.points, strict=True)}


def test_every_histogram_has_its_name_unit_and_semconv_boundaries(pipeline, http_receiver):
    assert pipeline(http_receiver)
    operation = _core.new_span_context(None, "text_completion", "tiny")
    assert _core.record_requests(batch_header(), [request_record()]) == 1
    assert _core.record_operation(operation_record(operation))
    metrics = flushed_metrics(http_receiver)
    assert set(metrics) == set(HISTOGRAMS)
    for name, (unit, bounds) in HISTOGRAMS.items():
        metric = metrics[name]
        assert metric.kind == "histogram", name
        assert metric.metric.unit == unit, name
        assert metric.metric.description, name
        assert (
            metric.metric.histogram.aggregation_temporality == AggregationTemporality.AGGREGATION_TEMPORALITY_CUMULATIVE
        )
        for point in metric.points:
            assert list(point.explicit_bounds) == bounds, name
            assert len(point.bucket_counts) == len(bounds) + 1, name
            assert sum(point.bucket_counts) == point.count, name
        assert metric.scope.name == "opentelemetry.instrumentation.vllm"


def test_counts_sums_and_buckets_per_attribute_set(pipeline, http_receiver):
    assert pipeline(http_receiver)
    successes = [
        request_record(ttft=0.04, tpot=0.01, e2e=0.1, input_tokens=10, output_tokens=100),
        request_record(ttft=0.3, tpot=0.02, e2e=0.2, input_tokens=20, output_tokens=200),
        request_record(ttft=0.0005, tpot=3.0, e2e=0.3, input_tokens=30, output_tokens=300),
    ]
    failure = request_record(error_type="ValueError", ttft=0.5, tpot=0.5, e2e=0.7, input_tokens=40, output_tokens=0)
    other_model = request_record(ttft=0.02, e2e=1.5, input_tokens=5, output_tokens=6)
    assert _core.record_requests(batch_header(), [*successes, failure]) == 4
    other = batch_header(request_model="big", response_model="big-v2")
    assert _core.record_requests(other, [other_model]) == 1
    metrics = flushed_metrics(http_receiver)
    big = {**BASE, "gen_ai.request.model": "big", "gen_ai.response.model": "big-v2"}

    duration = points_by_attributes(metrics["gen_ai.server.request.duration"])
    assert set(duration) == {frozen(BASE), frozen({**BASE, "error.type": "ValueError"}), frozen(big)}
    ok = duration[frozen(BASE)]
    assert ok.count == 3
    assert ok.sum == pytest.approx(0.6)
    assert (ok.min, ok.max) == (0.1, 0.3)
    # (0.08, 0.16] holds 0.1, (0.16, 0.32] holds 0.2 and 0.3.
    assert list(ok.bucket_counts) == [0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0]
    failed = duration[frozen({**BASE, "error.type": "ValueError"})]
    assert (failed.count, failed.sum) == (1, 0.7)
    assert (duration[frozen(big)].count, duration[frozen(big)].sum) == (1, 1.5)

    # Semconv: TTFT and TPOT describe successful responses only.
    ttft = points_by_attributes(metrics["gen_ai.server.time_to_first_token"])
    assert set(ttft) == {frozen(BASE), frozen(big)}
    assert ttft[frozen(BASE)].count == 3
    assert ttft[frozen(BASE)].sum == pytest.approx(0.3405)
    # 0.0005 <= 0.001 lands in the first bucket, 0.04 in (0.02, 0.04], 0.3 in (0.25, 0.5].
    assert list(ttft[frozen(BASE)].bucket_counts) == [1, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0]
    tpot = points_by_attributes(metrics["gen_ai.server.time_per_output_token"])
    assert tpot[frozen(BASE)].count == 3
    assert tpot[frozen(BASE)].bucket_counts[-1] == 1  # 3.0 > 2.5: the overflow bucket

    tokens = points_by_attributes(metrics["gen_ai.client.token.usage"])
    assert set(tokens) == {
        frozen({**BASE, "gen_ai.token.type": "input"}),
        frozen({**BASE, "gen_ai.token.type": "output"}),
        frozen({**big, "gen_ai.token.type": "input"}),
        frozen({**big, "gen_ai.token.type": "output"}),
    }
    tokens_in = tokens[frozen({**BASE, "gen_ai.token.type": "input"})]
    tokens_out = tokens[frozen({**BASE, "gen_ai.token.type": "output"})]
    assert (tokens_in.count, tokens_in.sum) == (4, 100)
    assert (tokens_out.count, tokens_out.sum) == (4, 600)
    assert (tokens_out.min, tokens_out.max) == (0, 300)


def test_metric_points_carry_no_per_request_attributes(pipeline, http_receiver):
    assert pipeline(http_receiver)
    header = batch_header(attributes={"gen_ai.request.temperature": 0.7, "vllm.request.stream": True})
    records = [
        request_record(response_id=f"cmpl-{i}", attributes={"gen_ai.request.seed": i}, finish_reasons=["length"])
        for i in range(5)
    ]
    assert _core.record_requests(header, records) == 5
    operation = _core.new_span_context(None, "text_completion", "tiny")
    assert _core.record_operation(operation_record(operation, attributes={"vllm.operation.tag": "x"}))
    metrics = flushed_metrics(http_receiver)
    assert set(metrics) == set(HISTOGRAMS)
    for metric in metrics.values():
        if metric.name == "gen_ai.client.token.usage":
            expected = [{**BASE, "gen_ai.token.type": "input"}, {**BASE, "gen_ai.token.type": "output"}]
        else:
            expected = [BASE]
        # One point per semconv attribute set, however many distinct requests went in.
        assert sorted(metric.point_attributes(), key=str) == expected, metric.name


def test_failed_requests_record_no_ttft_or_tpot(pipeline, http_receiver):
    assert pipeline(http_receiver)
    assert _core.record_requests(batch_header(), [request_record(error_type="EngineDeadError")] * 2) == 2
    metrics = flushed_metrics(http_receiver)
    assert "gen_ai.server.time_to_first_token" not in metrics
    assert "gen_ai.server.time_per_output_token" not in metrics
    (point,) = metrics["gen_ai.server.request.duration"].points
    assert point.count == 2
    assert metrics["gen_ai.server.request.duration"].point_attributes() == [{**BASE, "error.type": "EngineDeadError"}]
    assert [p.get("error.type") for p in metrics["gen_ai.client.token.usage"].point_attributes()] == [None, None]


def test_absent_values_record_nothing(pipeline, http_receiver):
    assert pipeline(http_receiver)
    record = request_record(start_ns=T0, end_ns=T0 + 1234 * MS, input_tokens=None, output_tokens=None, **NO_TIMINGS)
    assert _core.record_requests(batch_header(), [record]) == 1
    metrics = flushed_metrics(http_receiver)
    # Without vLLM's e2e latency the request duration is the span's own duration.
    assert set(metrics) == {"gen_ai.server.request.duration"}
    (point,) = metrics["gen_ai.server.request.duration"].points
    assert (point.count, point.sum) == (1, 1.234)


def test_invalid_values_record_nothing(pipeline, http_receiver):
    assert pipeline(http_receiver)
    record = request_record(
        ttft=float("nan"),
        tpot=float("inf"),
        queue=-0.1,
        prefill=float("-inf"),
        decode=None,
        inference=None,
        e2e=0.5,
        input_tokens=-1,
        output_tokens=7,
    )
    assert _core.record_requests(batch_header(), [record]) == 1
    metrics = flushed_metrics(http_receiver)
    assert set(metrics) == {"gen_ai.server.request.duration", "gen_ai.client.token.usage"}
    assert metrics["gen_ai.client.token.usage"].point_attributes() == [{**BASE, "gen_ai.token.type": "output"}]


def test_operation_duration_with_and_without_error(pipeline, http_receiver):
    assert pipeline(http_receiver)
    ok = _core.new_span_context(None, "text_completion", "tiny")
    bad = _core.new_span_context(None, "text_completion", "tiny")
    assert _core.record_operation(operation_record(ok, start_ns=T0, end_ns=T0 + 500 * MS))
    assert _core.record_operation(
        operation_record(bad, start_ns=T0, end_ns=T0 + 30 * MS, error_type="KeyboardInterrupt")
    )
    metrics = flushed_metrics(http_receiver)
    assert set(metrics) == {"gen_ai.client.operation.duration"}
    points = points_by_attributes(metrics["gen_ai.client.operation.duration"])
    assert (points[frozen(BASE)].count, points[frozen(BASE)].sum) == (1, 0.5)
    failed = points[frozen({**BASE, "error.type": "KeyboardInterrupt"})]
    assert (failed.count, failed.sum) == (1, 0.03)


def test_unsampled_operations_still_record_metrics(pipeline, http_receiver):
    assert pipeline(http_receiver, {"OTEL_TRACES_SAMPLER": "always_off"})
    operation = _core.new_span_context(None, "text_completion", "tiny")
    assert operation[2] == 0
    assert _core.record_operation(operation_record(operation))
    metrics = flushed_metrics(http_receiver)
    assert metrics["gen_ai.client.operation.duration"].points[0].count == 1
    assert http_receiver.spans() == []


def test_cumulative_temporality_accumulates_across_exports(pipeline, http_receiver):
    assert pipeline(http_receiver)
    assert _core.record_requests(batch_header(), [request_record(e2e=0.1)]) == 1
    first = flushed_metrics(http_receiver)["gen_ai.server.request.duration"].points[0]
    assert _core.record_requests(batch_header(), [request_record(e2e=0.2)]) == 1
    second = flushed_metrics(http_receiver)["gen_ai.server.request.duration"].points[0]
    assert (first.count, second.count) == (1, 2)
    assert second.sum == pytest.approx(0.3)
    assert second.start_time_unix_nano == first.start_time_unix_nano
    assert second.time_unix_nano >= first.time_unix_nano


@pytest.mark.parametrize("preference", ["delta", "DELTA", "lowmemory"])
def test_delta_temporality_exports_only_new_measurements(pipeline, http_receiver, preference):
    # "lowmemory" makes histograms delta too (the spec's table).
    assert pipeline(http_receiver, {"OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE": preference})
    assert _core.record_requests(batch_header(), [request_record(e2e=0.1)]) == 1
    first_metric = flushed_metrics(http_receiver)["gen_ai.server.request.duration"]
    assert first_metric.metric.histogram.aggregation_temporality == AggregationTemporality.AGGREGATION_TEMPORALITY_DELTA
    assert _core.record_requests(batch_header(), [request_record(e2e=0.2)]) == 1
    second_metric = flushed_metrics(http_receiver)["gen_ai.server.request.duration"]
    (first,), (second,) = first_metric.points, second_metric.points
    assert (first.count, first.sum) == (1, 0.1)
    assert (second.count, second.sum) == (1, 0.2)
    assert second.start_time_unix_nano == first.time_unix_nano
