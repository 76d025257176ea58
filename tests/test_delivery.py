"""Which delivery each signal gets: the precedence table (pure Python), and its ends, end to end."""

from __future__ import annotations

import logging
import subprocess
import sys

import pytest
from helpers import QUIET_ARGUMENTS, batch_header, request_record
from opentelemetry.instrumentation.vllm import VllmInstrumentor, _core, _delivery, force_flush
from opentelemetry.instrumentation.vllm._delivery import BRIDGE, NATIVE, Decision, Inputs, decide

# (inputs, expected decision): every row of the README table, and what each row beats.
TABLE = [
    pytest.param(Inputs(mode_argument="native", provider_argument=True), NATIVE, "delivery argument", id="arg-native"),
    pytest.param(
        Inputs(mode_argument="bridge", mode_variable="native", exporter_configured=True),
        BRIDGE,
        "delivery argument",
        id="arg-bridge-beats-variable",
    ),
    pytest.param(
        Inputs(mode_variable="native", provider_argument=True, global_sdk_provider=True),
        NATIVE,
        _delivery.DELIVERY_VARIABLE,
        id="variable-native-beats-provider",
    ),
    pytest.param(
        Inputs(mode_variable="bridge", exporter_configured=True),
        BRIDGE,
        _delivery.DELIVERY_VARIABLE,
        id="variable-bridge-beats-exporter-variables",
    ),
    pytest.param(
        Inputs(mode_variable="auto", provider_argument=True, exporter_configured=True),
        BRIDGE,
        "provider argument",
        id="provider-beats-exporter-variables",
    ),
    pytest.param(
        Inputs(exporter_configured=True, global_sdk_provider=True),
        NATIVE,
        "exporter variables",
        id="exporter-variables-beat-global-sdk",
    ),
    pytest.param(Inputs(global_sdk_provider=True), BRIDGE, "SDK provider configured in code", id="global-sdk"),
    pytest.param(Inputs(), NATIVE, "default", id="default"),
    pytest.param(Inputs(mode_argument="BRIDGE "), BRIDGE, "delivery argument", id="case-and-space"),
]


@pytest.mark.parametrize(("inputs", "mode", "reason"), TABLE)
def test_precedence_table(inputs, mode, reason):
    assert decide(inputs) == Decision(mode, reason)


def test_an_invalid_mode_is_ignored_with_a_warning(caplog):
    caplog.set_level(logging.WARNING, "opentelemetry.instrumentation.vllm")
    assert decide(Inputs(mode_variable="grpc", provider_argument=True)) == Decision(BRIDGE, "provider argument")
    assert "invalid value 'grpc'" in caplog.text


@pytest.mark.parametrize(
    ("variables", "traces", "metrics"),
    [
        ({"OTEL_TRACES_EXPORTER": "console"}, True, False),
        ({"OTEL_METRICS_EXPORTER": "none"}, False, True),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"}, True, True),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://c:4318/v1/traces"}, True, False),
        ({"OTEL_EXPORTER_OTLP_METRICS_PROTOCOL": "grpc"}, False, True),
        ({"OTEL_EXPORTER_OTLP_LOGS_ENDPOINT": "http://c:4318/v1/logs", "OTEL_LOGS_EXPORTER": "otlp"}, False, False),
        ({"OTEL_TRACES_EXPORTER": " ", "OTEL_SERVICE_NAME": "svc", "OTEL_BSP_SCHEDULE_DELAY": "5"}, False, False),
    ],
)
def test_which_variables_choose_native_export(variables, traces, metrics):
    assert _delivery.exporter_configured("traces", variables) is traces
    assert _delivery.exporter_configured("metrics", variables) is metrics


def test_plan_reads_arguments_overrides_environment_and_global_providers(global_sdk_providers):
    tracer_provider, _ = global_sdk_providers
    plan = _delivery.plan({}, {}, {})
    assert plan == {
        "traces": Decision(BRIDGE, "SDK provider configured in code"),
        "metrics": Decision(BRIDGE, "SDK provider configured in code"),
    }
    # An instrument() argument that sets an exporter variable counts as that variable.
    plan = _delivery.plan({"traces_exporter": "console"}, {"OTEL_TRACES_EXPORTER": "console"}, {})
    assert plan["traces"] == Decision(NATIVE, "exporter variables")
    assert plan["metrics"].mode == BRIDGE
    plan = _delivery.plan({"delivery": "native"}, {}, {_delivery.DELIVERY_VARIABLE: "bridge"})
    assert {d.mode for d in plan.values()} == {NATIVE}


def test_api_default_providers_are_not_sdk_providers():
    # The session's global providers are the API's proxies (no test sets them for good).
    assert _delivery.plan({}, {}, {})["traces"] == Decision(NATIVE, "default")


def test_instrument_does_not_import_the_sdk_an_application_does_not_use():
    # In a fresh interpreter: an application that never imported opentelemetry-sdk cannot have an SDK
    # provider, so the check does not import it (20 ms and thousands of objects for nothing).
    code = (
        "import sys\n"
        "from opentelemetry.instrumentation.vllm import VllmInstrumentor\n"
        "VllmInstrumentor().instrument(skip_dep_check=True, traces_exporter='none', metrics_exporter='none')\n"
        "print(sorted(m for m in sys.modules if m.startswith('opentelemetry.sdk')))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert result.stdout.strip() == "[]", result.stdout + result.stderr


# ---- end to end: the variable forces either mode --------------------------------------------------


@pytest.fixture
def instrumentor():
    instrumentor = VllmInstrumentor()
    yield instrumentor
    if instrumentor.is_instrumented_by_opentelemetry:
        instrumentor.uninstrument()


def record_one() -> None:
    parent = _core.new_span_context(None, "text_completion", "m")
    assert _core.record_requests(batch_header(parent=(*parent, False)), [request_record()]) == 1


def test_variable_forces_native_even_with_providers_passed(
    instrumentor, monkeypatch, http_receiver, tracer_provider, meter_provider, span_exporter
):
    monkeypatch.setenv(_delivery.DELIVERY_VARIABLE, "native")
    instrumentor.instrument(
        skip_dep_check=True,
        tracer_provider=tracer_provider,
        meter_provider=meter_provider,
        endpoint=http_receiver.endpoint,
        **QUIET_ARGUMENTS,
    )
    assert _core.delivery() == ("otlp", "otlp")
    record_one()
    assert force_flush(5.0)
    assert span_exporter.get_finished_spans() == ()
    assert len(http_receiver.spans()) == 1


def test_variable_forces_bridge_over_exporter_variables(
    instrumentor, monkeypatch, http_receiver, global_sdk_providers, span_exporter, metric_reader
):
    monkeypatch.setenv(_delivery.DELIVERY_VARIABLE, "bridge")
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "otlp")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", http_receiver.endpoint)
    instrumentor.instrument(skip_dep_check=True, **QUIET_ARGUMENTS)
    assert _core.delivery() == ("bridge", "bridge")
    record_one()
    assert force_flush(5.0)
    assert http_receiver.requests == []
    (span,) = span_exporter.get_finished_spans()
    assert span.name == "text_completion tiny"
    assert metric_reader.get_metrics_data() is not None


def test_exporter_variables_keep_native_export_beside_a_configured_sdk(
    instrumentor, monkeypatch, http_receiver, global_sdk_providers, span_exporter
):
    # What opentelemetry-instrument with the distro does: OTEL_TRACES_EXPORTER=otlp and an SDK.
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "otlp")
    monkeypatch.setenv("OTEL_METRICS_EXPORTER", "otlp")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", http_receiver.endpoint)
    instrumentor.instrument(skip_dep_check=True, **QUIET_ARGUMENTS)
    assert _core.delivery() == ("otlp", "otlp")
    record_one()
    assert force_flush(5.0)
    assert span_exporter.get_finished_spans() == ()
    assert len(http_receiver.spans()) == 1


def test_a_running_pipeline_keeps_its_delivery_with_a_warning(instrumentor, http_receiver, tracer_provider, caplog):
    instrumentor.instrument(skip_dep_check=True, endpoint=http_receiver.endpoint, **QUIET_ARGUMENTS)
    instrumentor.uninstrument()  # flushes; the pipeline keeps running
    caplog.set_level(logging.WARNING, "opentelemetry.instrumentation.vllm")
    instrumentor.instrument(skip_dep_check=True, tracer_provider=tracer_provider, **QUIET_ARGUMENTS)
    assert _core.delivery() == ("otlp", "otlp")
    assert "traces keep their otlp delivery" in caplog.text
