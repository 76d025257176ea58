"""Local HDR latency percentiles (``latency_percentiles`` / ``get_latency_summary``)."""

from __future__ import annotations

import pytest
from helpers import MS, NO_TIMINGS, T0, batch_header, operation_record, request_record
from opentelemetry.instrumentation.vllm import _core, get_latency_percentiles, get_latency_summary

NO_EXPORT = {"OTEL_TRACES_EXPORTER": "none", "OTEL_METRICS_EXPORTER": "none"}
# Three significant digits: a value is reported within 0.1% of what was recorded.
HDR = 1e-3


def rows_by_key() -> dict:
    rows = _core.latency_percentiles()
    keys = [(r["metric"], r["model"]) for r in rows]
    assert len(keys) == len(set(keys))
    return {(r["metric"], r["model"]): r for r in rows}


def test_percentiles_of_a_uniform_distribution(pipeline):
    assert pipeline(None, NO_EXPORT)
    # e2e 1 ms .. 1000 ms; TTFT a tenth of it.
    records = [request_record(e2e=ms / 1000, ttft=ms / 10000, tpot=None) for ms in range(1, 1001)]
    assert _core.record_requests(batch_header(), records) == 1000
    rows = rows_by_key()
    e2e = rows[("gen_ai.server.request.duration", "tiny")]
    assert set(e2e) == {"metric", "model", "count", "p50", "p90", "p99", "p99.9", "max"}
    assert e2e["count"] == 1000
    for key, expected in [("p50", 0.5), ("p90", 0.9), ("p99", 0.99), ("p99.9", 0.999), ("max", 1.0)]:
        assert e2e[key] == pytest.approx(expected, rel=HDR), key
    ttft = rows[("gen_ai.server.time_to_first_token", "tiny")]
    assert ttft["count"] == 1000
    assert ttft["p50"] == pytest.approx(0.05, rel=HDR)
    assert ttft["max"] == pytest.approx(0.1, rel=HDR)
    assert ("gen_ai.server.time_per_output_token", "tiny") not in rows


def test_percentiles_are_kept_per_metric_and_model(pipeline):
    assert pipeline(None, NO_EXPORT)
    assert _core.record_requests(batch_header(request_model="a"), [request_record(e2e=0.1)] * 3) == 3
    assert _core.record_requests(batch_header(request_model="b"), [request_record(e2e=2.0)]) == 1
    assert _core.record_requests(batch_header(request_model=None), [request_record(e2e=0.3)]) == 1
    operation = _core.new_span_context(None, "text_completion", "a")
    assert _core.record_operation(operation_record(operation, request_model="a", start_ns=T0, end_ns=T0 + 700 * MS))
    rows = rows_by_key()
    assert rows[("gen_ai.server.request.duration", "a")]["count"] == 3
    assert rows[("gen_ai.server.request.duration", "a")]["p50"] == pytest.approx(0.1, rel=HDR)
    assert rows[("gen_ai.server.request.duration", "b")]["max"] == pytest.approx(2.0, rel=HDR)
    assert rows[("gen_ai.server.request.duration", "")]["count"] == 1
    assert rows[("gen_ai.client.operation.duration", "a")]["p50"] == pytest.approx(0.7, rel=HDR)
    for phase, value in [
        ("vllm.request.queue.duration", 0.002),
        ("vllm.request.prefill.duration", 0.03),
        ("vllm.request.decode.duration", 0.2),
        ("vllm.request.inference.duration", 0.23),
    ]:
        assert rows[(phase, "a")]["count"] == 3
        assert rows[(phase, "a")]["p99"] == pytest.approx(value, rel=HDR)


def test_failed_requests_count_in_duration_but_not_ttft(pipeline):
    assert pipeline(None, NO_EXPORT)
    records = [request_record(e2e=0.1), request_record(e2e=0.9, error_type="ValueError")]
    assert _core.record_requests(batch_header(), records) == 2
    rows = rows_by_key()
    assert rows[("gen_ai.server.request.duration", "tiny")]["count"] == 2
    assert rows[("gen_ai.server.time_to_first_token", "tiny")]["count"] == 1


def test_duration_falls_back_to_the_timestamps(pipeline):
    assert pipeline(None, NO_EXPORT)
    record = request_record(start_ns=T0, end_ns=T0 + 1500 * MS, **NO_TIMINGS)
    assert _core.record_requests(batch_header(), [record]) == 1
    rows = rows_by_key()
    assert list(rows) == [("gen_ai.server.request.duration", "tiny")]
    assert rows[("gen_ai.server.request.duration", "tiny")]["p50"] == pytest.approx(1.5, rel=HDR)


def test_extreme_values_saturate(pipeline):
    assert pipeline(None, NO_EXPORT)
    assert _core.record_requests(batch_header(), [request_record(e2e=0.0), request_record(e2e=1e9)]) == 2
    row = rows_by_key()[("gen_ai.server.request.duration", "tiny")]
    assert row["count"] == 2
    assert row["max"] == pytest.approx(3600.0, rel=HDR)


def test_summary_table(pipeline):
    assert pipeline(None, NO_EXPORT)
    assert _core.record_requests(batch_header(request_model="summary-model"), [request_record(e2e=0.25)]) == 1
    assert get_latency_percentiles() == _core.latency_percentiles()
    table = get_latency_summary()
    lines = table.strip().splitlines()
    assert lines[0].split() == [
        "metric",
        "model",
        "count",
        "p50",
        "ms",
        "p90",
        "ms",
        "p99",
        "ms",
        "p99.9",
        "ms",
        "max",
        "ms",
    ]
    (duration,) = [line for line in lines if line.startswith("gen_ai.server.request.duration")]
    fields = duration.split()
    assert fields[1:3] == ["summary-model", "1"]
    assert float(fields[3]) == pytest.approx(250.0, rel=HDR)
    assert len(lines) == 1 + len(_core.latency_percentiles())
