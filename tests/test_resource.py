"""The resource and instrumentation scope every span and metric is exported under."""

from __future__ import annotations

import os
import socket
import sys
import uuid

import pytest
from helpers import batch_header, request_record
from opentelemetry.instrumentation.vllm import _core
from opentelemetry.instrumentation.vllm.version import __version__
from opentelemetry.sdk.resources import Resource
from otlp_receivers import duplicate_keys


def exported_resources(receiver) -> tuple[dict, dict]:
    assert _core.record_requests(batch_header(), [request_record()]) == 1
    assert _core.force_flush(5.0)
    (span,) = receiver.spans()
    assert not duplicate_keys(span.resource_kvs)
    metric_resources = [m.resource for m in receiver.metrics()]
    assert metric_resources
    return span.resource, metric_resources[0]


def service_name(receiver) -> str:
    span_resource, metric_resource = exported_resources(receiver)
    assert span_resource == metric_resource
    return span_resource["service.name"]


def test_default_resource_names_an_unknown_service_after_the_executable(pipeline, http_receiver):
    assert pipeline(http_receiver)
    span_resource, metric_resource = exported_resources(http_receiver)
    assert span_resource == metric_resource
    assert span_resource["service.name"] == f"unknown_service:{os.path.basename(os.path.realpath(sys.executable))}"
    assert span_resource["telemetry.sdk.language"] == "rust"
    assert span_resource["telemetry.sdk.name"] == "opentelemetry"
    assert span_resource["telemetry.sdk.version"]


def test_scope_is_this_instrumentation_with_the_package_version(pipeline, http_receiver):
    assert pipeline(http_receiver)
    exported_resources(http_receiver)
    (span,) = http_receiver.spans()
    assert (span.scope.name, span.scope.version) == ("opentelemetry.instrumentation.vllm", __version__)
    assert _core.__version__ == __version__
    for metric in http_receiver.metrics():
        assert (metric.scope.name, metric.scope.version) == ("opentelemetry.instrumentation.vllm", __version__)


def test_resource_attributes_and_service_name_from_the_environment(pipeline, http_receiver, monkeypatch):
    monkeypatch.setenv(
        "OTEL_RESOURCE_ATTRIBUTES",
        "deployment.environment=prod,service.instance.id=i%2D1,service.name=from-resource-attributes",
    )
    monkeypatch.setenv("OTEL_SERVICE_NAME", "from-service-name")
    assert pipeline(http_receiver)
    span_resource, _ = exported_resources(http_receiver)
    assert span_resource["deployment.environment"] == "prod"
    assert span_resource["service.instance.id"] == "i-1"
    # The spec: OTEL_SERVICE_NAME wins over service.name in OTEL_RESOURCE_ATTRIBUTES.
    assert span_resource["service.name"] == "from-service-name"


def test_service_name_in_resource_attributes_alone(pipeline, http_receiver, monkeypatch):
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "service.name=only-here")
    assert pipeline(http_receiver)
    assert service_name(http_receiver) == "only-here"


@pytest.mark.parametrize(
    ("env", "python_resource", "explicit_resource", "expected"),
    [
        ("env", None, None, "env"),
        ("env", {"service.name": "python-sdk"}, None, "python-sdk"),
        ("env", {"service.name": "python-sdk"}, {"service.name": "explicit"}, "explicit"),
        (None, {"service.name": "python-sdk"}, None, "python-sdk"),
        (None, None, {"service.name": "explicit"}, "explicit"),
        # The Python SDK's placeholder does not hide a real name...
        ("env", {"service.name": "unknown_service"}, None, "env"),
        # ...and without one, ours names the executable, not "unknown_service".
        (None, {"service.name": "unknown_service"}, None, "unknown_service:"),
    ],
)
def test_service_name_precedence(
    pipeline, http_receiver, monkeypatch, env, python_resource, explicit_resource, expected
):
    if env is not None:
        monkeypatch.setenv("OTEL_SERVICE_NAME", env)
    assert pipeline(http_receiver, python_resource=python_resource, explicit_resource=explicit_resource)
    name = service_name(http_receiver)
    if expected.endswith(":"):
        assert name == expected + os.path.basename(os.path.realpath(sys.executable))
    else:
        assert name == expected


def test_python_sdk_resource_is_merged_but_not_its_sdk_identity(pipeline, http_receiver, monkeypatch):
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment=from-env,team=ml")
    python_resource = dict(
        Resource.create(
            {"service.name": "shop", "service.instance.id": "pod-7", "deployment.environment": "staging"}
        ).attributes
    )
    assert python_resource["telemetry.sdk.language"] == "python"
    explicit = {"team": "inference", "vllm.replica": 3}
    assert pipeline(http_receiver, python_resource=python_resource, explicit_resource=explicit)
    span_resource, _ = exported_resources(http_receiver)
    assert span_resource["service.name"] == "shop"
    assert span_resource["service.instance.id"] == "pod-7"
    assert span_resource["deployment.environment"] == "staging"
    assert span_resource["team"] == "inference"
    assert span_resource["vllm.replica"] == 3
    assert span_resource["telemetry.sdk.language"] == "rust"
    assert span_resource["telemetry.sdk.version"] != python_resource["telemetry.sdk.version"]


def test_each_process_is_told_apart_by_instance_id_pid_and_host(pipeline, http_receiver):
    """Without a user's value: a random UUID v4 made for this process, its pid and the host's name,
    as a Python SDK with the process and host detectors would give (on spans and metrics alike)."""
    assert pipeline(http_receiver)
    span_resource, metric_resource = exported_resources(http_receiver)
    assert span_resource == metric_resource
    instance_id = span_resource["service.instance.id"]
    assert uuid.UUID(instance_id).version == 4 and str(uuid.UUID(instance_id)) == instance_id
    assert span_resource["process.pid"] == os.getpid()
    assert span_resource["host.name"] == socket.gethostname()


@pytest.mark.parametrize("where", ["env", "python_sdk", "explicit"])
def test_a_users_instance_id_and_host_name_win(pipeline, http_receiver, monkeypatch, where):
    attributes = {"service.instance.id": "replica-3", "host.name": "node-a"}
    if where == "env":
        monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "service.instance.id=replica-3,host.name=node-a")
    assert pipeline(
        http_receiver,
        python_resource=attributes if where == "python_sdk" else None,
        explicit_resource=attributes if where == "explicit" else None,
    )
    span_resource, _ = exported_resources(http_receiver)
    assert span_resource["service.instance.id"] == "replica-3"
    assert span_resource["host.name"] == "node-a"


def test_a_python_sdk_pid_of_another_process_is_not_taken(pipeline, http_receiver):
    """The Python SDK's resource is read once; in a forked child its process.pid is the parent's."""
    stale = os.getpid() + 1
    assert pipeline(http_receiver, python_resource={"process.pid": stale, "service.name": "shop"})
    span_resource, _ = exported_resources(http_receiver)
    assert span_resource["process.pid"] == os.getpid()
    assert span_resource["service.name"] == "shop"
