"""Configuration as a user sets it: OTEL_SDK_DISABLED, exporters, samplers, precedence, invalid values."""

from __future__ import annotations

import logging

import pytest
from helpers import (
    QUIET_SETTINGS,
    as_parent,
    batch_header,
    clean_environment,
    operation_record,
    request_record,
    run_python,
)
from opentelemetry.instrumentation.vllm import _core
from otlp_receivers import HttpReceiver

LOGGER = "opentelemetry.instrumentation.vllm"


def core_warnings(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == LOGGER and r.levelno == logging.WARNING]


@pytest.mark.parametrize("value", ["true", "TRUE", " True "])
def test_sdk_disabled_turns_everything_off(pipeline, http_receiver, monkeypatch, value):
    monkeypatch.setenv("OTEL_SDK_DISABLED", value)
    assert pipeline(http_receiver) is False
    assert _core.is_enabled() is False
    assert _core.record_requests(batch_header(), [request_record()]) == 0
    context = _core.new_span_context(None, "text_completion", "tiny")
    assert context[2] == 0, "a disabled core never samples"
    assert _core.record_operation(operation_record(context)) is False
    assert _core.force_flush(1.0) is True
    assert _core.stats() == {}
    assert _core.latency_percentiles() == []
    assert _core.latency_summary() == ""
    assert http_receiver.requests == []


def test_sdk_disabled_by_override_beats_the_environment(pipeline, http_receiver, monkeypatch):
    monkeypatch.setenv("OTEL_SDK_DISABLED", "false")
    assert pipeline(http_receiver, {"OTEL_SDK_DISABLED": "true"}) is False


def test_disabled_new_span_context_keeps_the_parent_trace(pipeline, monkeypatch):
    monkeypatch.setenv("OTEL_SDK_DISABLED", "true")
    assert pipeline() is False
    trace_id, span_id, flags = _core.new_span_context((0xABC, 0x123, 1, False), "chat")
    assert (trace_id, flags) == (0xABC, 0)
    assert span_id not in (0, 0x123)


def test_exporters_none_send_nothing_but_count(pipeline, http_receiver):
    assert pipeline(http_receiver, {"OTEL_TRACES_EXPORTER": "none", "OTEL_METRICS_EXPORTER": "none"})
    assert _core.record_requests(batch_header(), [request_record()] * 3) == 3
    assert _core.force_flush(5.0)
    stats = _core.stats()
    assert stats["requests_recorded"] == 3
    assert stats["spans_queued"] == 0
    assert stats["metric_exports"] == 0
    # Local percentiles are still kept.
    assert {r["metric"] for r in _core.latency_percentiles()} >= {"gen_ai.server.request.duration"}
    assert http_receiver.requests == []


def test_traces_exporter_none_keeps_metrics(pipeline, http_receiver):
    assert pipeline(http_receiver, {"OTEL_TRACES_EXPORTER": "none"})
    assert _core.record_requests(batch_header(), [request_record()]) == 1
    assert _core.force_flush(5.0)
    assert [r.path for r in http_receiver.requests] == ["/v1/metrics"]


def test_metrics_exporter_none_keeps_traces(pipeline, http_receiver):
    assert pipeline(http_receiver, {"OTEL_METRICS_EXPORTER": "none"})
    assert _core.record_requests(batch_header(), [request_record()]) == 1
    assert _core.force_flush(5.0)
    assert [r.path for r in http_receiver.requests] == ["/v1/traces"]


def test_only_the_first_exporter_of_a_list_is_used(pipeline, http_receiver):
    assert pipeline(http_receiver, {"OTEL_TRACES_EXPORTER": "none,otlp", "OTEL_METRICS_EXPORTER": "otlp,console"})
    assert _core.record_requests(batch_header(), [request_record()]) == 1
    assert _core.force_flush(5.0)
    assert [r.path for r in http_receiver.requests] == ["/v1/metrics"]


def test_console_exporter_prints_spans_on_stdout():
    script = """
        assert _core.configure({"OTEL_TRACES_EXPORTER": "console", "OTEL_METRICS_EXPORTER": "none"})
        assert _core.record_requests(batch_header(request_model="console-model"), [request_record()]) == 1
        assert _core.force_flush(5.0)
        print("flushed", flush=True)
    """
    result = run_python(script, clean_environment())
    assert result.returncode == 0, result.stderr
    assert "text_completion console-model" in result.stdout
    assert "flushed" in result.stdout


def test_always_off_sampler_exports_no_spans_but_metrics(pipeline, http_receiver):
    assert pipeline(http_receiver, {"OTEL_TRACES_SAMPLER": "always_off"})
    assert _core.record_requests(batch_header(), [request_record()] * 2) == 2
    assert _core.force_flush(5.0)
    assert http_receiver.spans() == []
    assert http_receiver.requests_to("/v1/traces") == []
    (duration,) = [m for m in http_receiver.metrics() if m.name == "gen_ai.server.request.duration"]
    assert duration.points[0].count == 2
    assert _core.stats()["spans_queued"] == 0


@pytest.mark.parametrize("sampler", [None, "parentbased_always_on", "parentbased_traceidratio"])
def test_parent_based_sampler_follows_an_unsampled_parent(pipeline, http_receiver, sampler):
    overrides = {"OTEL_TRACES_SAMPLER": sampler} if sampler else {}
    assert pipeline(http_receiver, overrides)
    unsampled = (0x1234, 0x5678, 0, True)
    operation = _core.new_span_context(unsampled, "text_completion", "tiny")
    assert operation[0] == 0x1234 and operation[2] == 0
    assert _core.record_requests(batch_header(parent=unsampled), [request_record()]) == 1
    assert _core.record_requests(batch_header(parent=as_parent(operation)), [request_record()]) == 1
    assert _core.record_operation(operation_record(operation, parent=unsampled))
    assert _core.force_flush(5.0)
    assert http_receiver.spans() == []
    assert http_receiver.metrics()


def test_parent_based_sampler_follows_a_sampled_parent(pipeline, http_receiver):
    assert pipeline(http_receiver, {"OTEL_TRACES_SAMPLER": "parentbased_always_off"})
    assert _core.record_requests(batch_header(parent=None), [request_record()]) == 1
    assert _core.record_requests(batch_header(parent=(0x1234, 0x5678, 1, True)), [request_record()]) == 1
    assert _core.force_flush(5.0)
    (span,) = http_receiver.spans()
    assert span.trace_id == 0x1234


@pytest.mark.parametrize(("ratio", "expected"), [("0", 0), ("1", 20), ("1.0", 20)])
def test_trace_id_ratio_sampler(pipeline, http_receiver, ratio, expected):
    assert pipeline(http_receiver, {"OTEL_TRACES_SAMPLER": "traceidratio", "OTEL_TRACES_SAMPLER_ARG": ratio})
    assert _core.record_requests(batch_header(), [request_record()] * 20) == 20
    assert _core.force_flush(5.0)
    assert len(http_receiver.spans()) == expected


def test_a_running_pipeline_is_kept_by_later_configure_calls(pipeline, http_receiver):
    assert pipeline(http_receiver)
    with HttpReceiver() as other:
        # Different settings are ignored while the first pipeline runs.
        assert _core.configure({**QUIET_SETTINGS, "OTEL_EXPORTER_OTLP_ENDPOINT": other.endpoint}) is True
        assert _core.configure({"OTEL_SDK_DISABLED": "true"}) is True
        assert _core.record_requests(batch_header(), [request_record()]) == 1
        assert _core.force_flush(5.0)
        assert other.requests == []
    assert len(http_receiver.spans()) == 1


def test_after_shutdown_configure_builds_a_fresh_pipeline(pipeline, http_receiver):
    assert pipeline(http_receiver)
    assert _core.record_requests(batch_header(), [request_record()]) == 1
    assert _core.shutdown(5.0)
    assert len(http_receiver.spans()) == 1
    with HttpReceiver() as other:
        assert _core.configure({**QUIET_SETTINGS, "OTEL_EXPORTER_OTLP_ENDPOINT": other.endpoint}) is True
        assert _core.stats()["requests_recorded"] == 0, "a fresh pipeline starts with fresh counters"
        assert _core.record_requests(batch_header(request_model="second"), [request_record()]) == 1
        assert _core.shutdown(5.0)
        assert [s.name for s in other.spans()] == ["text_completion second"]
    assert len(http_receiver.spans()) == 1


def test_an_invalid_value_falls_back_with_a_warning(pipeline, http_receiver, caplog, fresh_core_warnings):
    caplog.set_level(logging.WARNING, logger=LOGGER)
    assert pipeline(http_receiver, {"OTEL_TRACES_SAMPLER": "jaeger_remote"})
    assert _core.record_requests(batch_header(), [request_record()]) == 1
    assert _core.force_flush(5.0)
    assert len(http_receiver.spans()) == 1, "the default sampler (parentbased_always_on) is used"
    assert any("OTEL_TRACES_SAMPLER" in m and "jaeger_remote" in m for m in core_warnings(caplog))


def test_a_malformed_header_entry_is_reported_without_its_text(pipeline, http_receiver, caplog, fresh_core_warnings):
    caplog.set_level(logging.WARNING, logger=LOGGER)
    assert pipeline(http_receiver, {"OTEL_EXPORTER_OTLP_HEADERS": "api-key=ok,topsecretvalue"})
    assert _core.record_requests(batch_header(), [request_record()]) == 1
    assert _core.force_flush(5.0)
    assert http_receiver.requests[0].headers["api-key"] == "ok"
    messages = core_warnings(caplog)
    assert any("OTEL_EXPORTER_OTLP" in m and "HEADERS" in m for m in messages), messages
    assert not any("topsecretvalue" in m for m in messages)


def test_every_invalid_value_is_reported(pipeline, http_receiver, caplog, fresh_core_warnings):
    caplog.set_level(logging.WARNING, logger=LOGGER)
    overrides = {
        "OTEL_TRACES_SAMPLER": "jaeger_remote",
        "OTEL_BSP_MAX_QUEUE_SIZE": "-1",
        "OTEL_BSP_SCHEDULE_DELAY": "5s",
    }
    assert pipeline(http_receiver, overrides)
    text = "\n".join(core_warnings(caplog))
    for variable in overrides:
        assert variable in text, text


def test_an_exporter_that_cannot_be_built_disables_its_signal_without_raising(pipeline, caplog, fresh_core_warnings):
    caplog.set_level(logging.WARNING, logger=LOGGER)
    assert pipeline(None, {"OTEL_EXPORTER_OTLP_ENDPOINT": "not a url"}) is True
    assert _core.record_requests(batch_header(), [request_record()]) == 1
    assert _core.force_flush(2.0)
    stats = _core.stats()
    assert stats["requests_recorded"] == 1
    assert (stats["spans_queued"], stats["metric_exports"], stats["metric_exports_failed"]) == (0, 0, 0)
    assert "traces are disabled" in "\n".join(core_warnings(caplog))


def test_a_missing_certificate_disables_export_with_a_warning(pipeline, caplog, fresh_core_warnings, tmp_path):
    caplog.set_level(logging.WARNING, logger=LOGGER)
    missing = tmp_path / "missing-ca.pem"
    assert pipeline(None, {"OTEL_EXPORTER_OTLP_CERTIFICATE": str(missing)}) is True
    assert _core.record_requests(batch_header(), [request_record()]) == 1
    text = "\n".join(core_warnings(caplog))
    assert str(missing) in text and "disabled" in text


def test_every_exporter_that_cannot_be_built_is_reported(pipeline, caplog, fresh_core_warnings):
    caplog.set_level(logging.WARNING, logger=LOGGER)
    assert pipeline(None, {"OTEL_EXPORTER_OTLP_ENDPOINT": "not a url"}) is True
    text = "\n".join(core_warnings(caplog))
    assert "traces are disabled" in text
    assert "metrics are disabled" in text


def test_without_configure_the_core_is_built_from_the_environment_at_first_use(http_receiver):
    script = """
        # No configure() and no instrument(): the first call builds the pipeline from OTEL_* variables.
        assert _core.record_requests(batch_header(request_model="lazy"), [request_record()]) == 1
        assert _core.force_flush(5.0)
    """
    env = clean_environment(
        OTEL_EXPORTER_OTLP_ENDPOINT=http_receiver.endpoint, OTEL_SERVICE_NAME="lazy-service", **QUIET_SETTINGS
    )
    result = run_python(script, env)
    assert result.returncode == 0, result.stderr
    (span,) = http_receiver.spans()
    assert span.name == "text_completion lazy"
    assert span.resource["service.name"] == "lazy-service"
