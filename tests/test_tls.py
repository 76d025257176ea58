"""TLS: https/gRPC-over-TLS collectors with a private CA, client certificates, and failing closed.

Certificates come from ``trustme`` (a throwaway CA per test). The variables are the standard ones:
OTEL_EXPORTER_OTLP_CERTIFICATE (CA bundle that verifies the collector), and
OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE / OTEL_EXPORTER_OTLP_CLIENT_KEY (mutual TLS).
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import trustme
from helpers import batch_header, request_record
from opentelemetry.instrumentation.vllm import _core
from otlp_receivers import GrpcReceiver, HttpReceiver, ServerTls

LOGGER = "opentelemetry.instrumentation.vllm"
SECRET = "s3cr3t-t0ken-value"


class Pki:
    """A CA, the collector's certificate (for 127.0.0.1) and a client certificate, as PEM files."""

    def __init__(self, directory: Path, name: str) -> None:
        self.ca = trustme.CA(organization_name=f"{name} test CA")
        self.ca_pem = directory / f"{name}-ca.pem"
        self.ca.cert_pem.write_to_path(str(self.ca_pem))
        server = self.ca.issue_cert("127.0.0.1", "localhost")
        self.server_chain = directory / f"{name}-server.pem"
        self.server_key = directory / f"{name}-server.key"
        self.server_chain.write_bytes(b"".join(pem.bytes() for pem in server.cert_chain_pems))
        server.private_key_pem.write_to_path(str(self.server_key))
        client = self.ca.issue_cert("otel-vllm-client")
        self.client_cert = directory / f"{name}-client.pem"
        self.client_key = directory / f"{name}-client.key"
        self.client_cert.write_bytes(b"".join(pem.bytes() for pem in client.cert_chain_pems))
        client.private_key_pem.write_to_path(str(self.client_key))

    def server_tls(self, client_ca: Path | None = None) -> ServerTls:
        return ServerTls(self.server_chain, self.server_key, client_ca)


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    return Pki(tmp_path, "collector")


@pytest.fixture
def other_pki(tmp_path: Path) -> Pki:
    return Pki(tmp_path, "other")


@pytest.fixture(params=["http", "grpc"])
def tls_receiver(request):
    """``tls_receiver(ServerTls)``: a started TLS receiver of the parametrised protocol."""
    started = []

    def start(tls: ServerTls):
        receiver = (HttpReceiver if request.param == "http" else GrpcReceiver)(tls=tls).start()
        started.append(receiver)
        return receiver

    yield start
    if _core.is_enabled():
        _core.shutdown(5.0)
    for receiver in started:
        receiver.stop()


def response_ids(receiver) -> set[str]:
    return {s.attributes.get("gen_ai.response.id") for s in receiver.spans()}


def record_and_flush() -> bool:
    assert _core.record_requests(batch_header(), [request_record(response_id="tls-1")]) == 1
    return _core.force_flush(5.0)


def test_a_collector_with_a_private_ca_is_trusted_through_the_certificate_variable(
    pipeline, tls_receiver, pki, monkeypatch
):
    receiver = tls_receiver(pki.server_tls())
    assert receiver.endpoint.startswith("https://")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_CERTIFICATE", str(pki.ca_pem))
    assert pipeline(receiver)
    assert record_and_flush()
    assert response_ids(receiver) == {"tls-1"}
    assert "gen_ai.server.request.duration" in {m.name for m in receiver.metrics()}
    stats = _core.stats()
    assert (stats["spans_exported"], stats["spans_export_failed"], stats["metric_exports_failed"]) == (1, 0, 0)


def test_mutual_tls_with_the_client_certificate_variables(pipeline, tls_receiver, pki, monkeypatch):
    receiver = tls_receiver(pki.server_tls(client_ca=pki.ca_pem))
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_CERTIFICATE", str(pki.ca_pem))
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE", str(pki.client_cert))
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_CLIENT_KEY", str(pki.client_key))
    assert pipeline(receiver)
    assert record_and_flush()
    assert response_ids(receiver) == {"tls-1"}
    assert _core.stats()["spans_export_failed"] == 0


def test_mutual_tls_without_a_client_certificate_fails_closed_and_is_counted(pipeline, tls_receiver, pki, monkeypatch):
    receiver = tls_receiver(pki.server_tls(client_ca=pki.ca_pem))
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_CERTIFICATE", str(pki.ca_pem))
    assert pipeline(receiver, {"OTEL_EXPORTER_OTLP_TIMEOUT": "2000"})
    assert record_and_flush() is False
    assert receiver.requests == []
    stats = _core.stats()
    assert (stats["spans_exported"], stats["spans_export_failed"]) == (0, 1)
    assert stats["metric_exports_failed"] >= 1


def test_a_collector_certificate_from_another_ca_fails_closed_and_is_counted(
    pipeline, tls_receiver, pki, other_pki, monkeypatch, caplog, fresh_core_warnings
):
    caplog.set_level(logging.WARNING, logger=LOGGER)
    receiver = tls_receiver(pki.server_tls())
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_CERTIFICATE", str(other_pki.ca_pem))  # the wrong CA
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_HEADERS", f"authorization=Bearer%20{SECRET}")
    assert pipeline(receiver, {"OTEL_EXPORTER_OTLP_TIMEOUT": "2000"})
    assert record_and_flush() is False
    # Nothing reached the collector: no request, so neither the telemetry nor the header was sent.
    assert receiver.requests == []
    stats = _core.stats()
    assert (stats["spans_exported"], stats["spans_export_failed"]) == (0, 1)
    assert stats["metric_exports_failed"] >= 1
    messages = [r.getMessage() for r in caplog.records if r.name == LOGGER]
    assert any("spans failed" in m for m in messages), messages
    assert all(SECRET not in m for m in messages)
