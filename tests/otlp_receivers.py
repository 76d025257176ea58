"""In-process OTLP receivers for the tests: what the core exports, decoded back into protobuf.

``HttpReceiver`` serves OTLP/HTTP (protobuf and JSON bodies, optionally gzip) on 127.0.0.1 with an
ephemeral port; ``GrpcReceiver`` serves the OTLP gRPC TraceService and MetricsService. Both record
every request and flatten what arrived into ``ReceivedSpan`` / ``ReceivedMetric`` rows, so a test
can assert field by field on what a collector would have seen.

Both can misbehave on demand, as collectors do: answer with an error status (``status``), hold every
answer until the test calls ``release()`` (``hold()``), stop and start again on the same port
(``stop()`` / ``start()``), and serve TLS (``tls=ServerTls(...)``), optionally requiring a client
certificate.
"""

from __future__ import annotations

import base64
import gzip
import json
import socket
import ssl
import threading
import time
from concurrent import futures
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import grpc
from google.protobuf import json_format
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2, metrics_service_pb2_grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, InstrumentationScope, KeyValue
from opentelemetry.proto.metrics.v1.metrics_pb2 import Metric
from opentelemetry.proto.trace.v1.trace_pb2 import Span

ExportTraceServiceRequest = trace_service_pb2.ExportTraceServiceRequest
ExportMetricsServiceRequest = metrics_service_pb2.ExportMetricsServiceRequest

# Span.flags bits (trace.proto): the parent's is_remote is known / is true.
SPAN_FLAGS_CONTEXT_HAS_IS_REMOTE = 0x100
SPAN_FLAGS_CONTEXT_IS_REMOTE = 0x200


# ---- decoded values -------------------------------------------------------------------------


def any_value(value: AnyValue) -> Any:
    """The Python value of an OTLP AnyValue (arrays become tuples)."""
    kind = value.WhichOneof("value")
    if kind is None:
        return None
    if kind == "array_value":
        return tuple(any_value(v) for v in value.array_value.values)
    if kind == "kvlist_value":
        return {kv.key: any_value(kv.value) for kv in value.kvlist_value.values}
    return getattr(value, kind)


def typed_value(value: AnyValue) -> tuple[str, Any]:
    """(OTLP kind, value), e.g. ("int_value", 3) or ("array_value", (("string_value", "stop"),))."""
    kind = value.WhichOneof("value")
    if kind == "array_value":
        return kind, tuple(typed_value(v) for v in value.array_value.values)
    return kind, any_value(value)


def attributes(kvs: Any) -> dict[str, Any]:
    return {kv.key: any_value(kv.value) for kv in kvs}


def typed_attributes(kvs: Any) -> dict[str, tuple[str, Any]]:
    return {kv.key: typed_value(kv.value) for kv in kvs}


def duplicate_keys(kvs: Any) -> list[str]:
    seen: set[str] = set()
    dupes = []
    for kv in kvs:
        if kv.key in seen:
            dupes.append(kv.key)
        seen.add(kv.key)
    return dupes


@dataclass
class ReceivedSpan:
    span: Span
    resource: dict[str, Any]
    scope: InstrumentationScope
    resource_kvs: list[KeyValue] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.span.name

    @property
    def attributes(self) -> dict[str, Any]:
        return attributes(self.span.attributes)

    @property
    def typed_attributes(self) -> dict[str, tuple[str, Any]]:
        return typed_attributes(self.span.attributes)

    @property
    def trace_id(self) -> int:
        return int.from_bytes(self.span.trace_id, "big")

    @property
    def span_id(self) -> int:
        return int.from_bytes(self.span.span_id, "big")

    @property
    def parent_span_id(self) -> int:
        return int.from_bytes(self.span.parent_span_id, "big") if self.span.parent_span_id else 0


@dataclass
class ReceivedMetric:
    metric: Metric
    resource: dict[str, Any]
    scope: InstrumentationScope

    @property
    def name(self) -> str:
        return self.metric.name

    @property
    def kind(self) -> str:
        return self.metric.WhichOneof("data")

    @property
    def points(self) -> list[Any]:
        data = getattr(self.metric, self.kind)
        return list(data.data_points)

    def point_attributes(self) -> list[dict[str, Any]]:
        return [attributes(p.attributes) for p in self.points]


def spans_of(requests: list[ExportTraceServiceRequest]) -> list[ReceivedSpan]:
    out = []
    for request in requests:
        for rs in request.resource_spans:
            resource = attributes(rs.resource.attributes)
            for ss in rs.scope_spans:
                for span in ss.spans:
                    out.append(ReceivedSpan(span, resource, ss.scope, list(rs.resource.attributes)))
    return out


def metrics_of(requests: list[ExportMetricsServiceRequest]) -> list[ReceivedMetric]:
    out = []
    for request in requests:
        for rm in request.resource_metrics:
            resource = attributes(rm.resource.attributes)
            for sm in rm.scope_metrics:
                for metric in sm.metrics:
                    out.append(ReceivedMetric(metric, resource, sm.scope))
    return out


# ---- TLS ------------------------------------------------------------------------------------


@dataclass
class ServerTls:
    """PEM files of a receiver's TLS identity; ``client_ca`` set: clients must present a
    certificate issued by it (mutual TLS)."""

    cert_chain: Path
    key: Path
    client_ca: Path | None = None

    def ssl_context(self) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.cert_chain, self.key)
        if self.client_ca is not None:
            context.verify_mode = ssl.CERT_REQUIRED
            context.load_verify_locations(self.client_ca)
        return context


# ---- OTLP/HTTP ------------------------------------------------------------------------------

_ID_FIELDS = ("traceId", "spanId", "parentSpanId", "trace_id", "span_id", "parent_span_id")


def _hex_ids_to_base64(node: Any) -> Any:
    """OTLP/JSON writes ids as hex (spec); protobuf's JSON mapping expects base64 for bytes."""
    if isinstance(node, dict):
        out = {}
        for k, v in node.items():
            if k in _ID_FIELDS and isinstance(v, str):
                out[k] = base64.b64encode(bytes.fromhex(v)).decode() if v else ""
            else:
                out[k] = _hex_ids_to_base64(v)
        return out
    if isinstance(node, list):
        return [_hex_ids_to_base64(v) for v in node]
    return node


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that gave up (an exporter's timeout, an exited process) is expected here.
        pass


@dataclass
class HttpRequest:
    path: str
    headers: dict[str, str]  # lower-cased names
    raw_body: bytes  # as received (possibly gzip)
    body: bytes  # decompressed
    decoded: Any = None  # ExportTraceServiceRequest / ExportMetricsServiceRequest, or None
    decode_error: str | None = None


class HttpReceiver:
    """OTLP/HTTP receiver; ``status`` and ``delay`` (seconds) shape every response.

    ``status`` may be changed while it runs (a collector answering 503, then recovering);
    ``hold()`` makes every answer wait until ``release()``; ``stop()`` then ``start()`` restarts it
    on the same port; ``tls`` serves HTTPS.
    """

    def __init__(
        self, status: int = 200, delay: float = 0.0, *, tls: ServerTls | None = None, keep_bodies: bool = True
    ) -> None:
        self.status = status
        self.keep_bodies = keep_bodies  # False: a sink that keeps each request's path and headers only
        self.delay = delay
        self.tls = tls
        self._released = threading.Event()
        self.requests: list[HttpRequest] = []
        self._lock = threading.Lock()
        self._arrived = threading.Condition(self._lock)
        self._connections: set[socket.socket] = set()
        self.port = 0
        self._build()
        scheme = "https" if tls is not None else "http"
        self.endpoint = f"{scheme}://127.0.0.1:{self.port}"

    def _build(self) -> None:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:  # keep pytest output clean
                pass

            def setup(self) -> None:
                super().setup()
                with receiver._lock:
                    receiver._connections.add(self.connection)

            def finish(self) -> None:
                with receiver._lock:
                    receiver._connections.discard(self.connection)
                super().finish()

            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                headers = {k.lower(): v for k, v in self.headers.items()}
                receiver._record(self.path, headers, raw)
                if receiver.delay:
                    receiver._released.wait(receiver.delay)
                json_body = "json" in headers.get("content-type", "")
                payload = b"{}" if json_body else b""
                self.send_response(receiver.status)
                self.send_header("Content-Type", "application/json" if json_body else "application/x-protobuf")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        self._server = _QuietServer(("127.0.0.1", self.port), Handler)
        if self.tls is not None:
            self._server.socket = self.tls.ssl_context().wrap_socket(self._server.socket, server_side=True)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, name="otlp-http-receiver", daemon=True
        )
        self._running = False

    def start(self) -> HttpReceiver:
        """Starts serving; after ``stop()``, serves again on the same port."""
        if self._thread.ident is not None:
            self._build()
        self._thread.start()
        self._running = True
        return self

    def hold(self) -> None:
        """Every answer from now on waits until ``release()`` (the request is recorded first)."""
        self._released = threading.Event()
        self.delay = 3600.0

    def release(self) -> None:
        """Answers every delayed request now, and later ones without delay."""
        self.delay = 0.0
        self._released.set()

    def stop(self) -> None:
        self.release()
        if self._running:
            self._running = False
            self._server.shutdown()
        self._server.server_close()
        # A stopped collector also drops the connections clients keep alive.
        with self._lock:
            connections, self._connections = self._connections, set()
        for connection in connections:
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def __enter__(self) -> HttpReceiver:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def _record(self, path: str, headers: dict[str, str], raw: bytes) -> None:
        if not self.keep_bodies:
            with self._arrived:
                self.requests.append(HttpRequest(path, headers, b"", b"", decode_error="not kept"))
                self._arrived.notify_all()
            return
        body = raw
        request = HttpRequest(path, headers, raw, raw)
        try:
            if headers.get("content-encoding", "").lower() == "gzip":
                body = gzip.decompress(raw)
                request.body = body
            message_type = {"/v1/traces": ExportTraceServiceRequest, "/v1/metrics": ExportMetricsServiceRequest}.get(
                path
            )
            if message_type is not None:
                message = message_type()
                if "json" in headers.get("content-type", ""):
                    json_format.ParseDict(_hex_ids_to_base64(json.loads(body)), message, ignore_unknown_fields=False)
                else:
                    message.ParseFromString(body)
                request.decoded = message
        except Exception as e:  # noqa: BLE001 - recorded, asserted on by tests
            request.decode_error = f"{type(e).__name__}: {e}"
        with self._arrived:
            self.requests.append(request)
            self._arrived.notify_all()

    # -- views

    def requests_to(self, path: str) -> list[HttpRequest]:
        with self._lock:
            return [r for r in self.requests if r.path == path]

    def trace_requests(self) -> list[ExportTraceServiceRequest]:
        return [r.decoded for r in self.requests_to("/v1/traces") if r.decoded is not None]

    def metric_requests(self) -> list[ExportMetricsServiceRequest]:
        return [r.decoded for r in self.requests_to("/v1/metrics") if r.decoded is not None]

    def spans(self) -> list[ReceivedSpan]:
        return spans_of(self.trace_requests())

    def metrics(self) -> list[ReceivedMetric]:
        return metrics_of(self.metric_requests())

    def latest_metrics(self) -> list[ReceivedMetric]:
        """The metrics of the last export only (cumulative exports repeat earlier points)."""
        requests = self.metric_requests()
        return metrics_of(requests[-1:])

    def wait_for(self, predicate: Any, timeout: float = 10.0) -> bool:
        """Waits until ``predicate(self)`` holds (for exports the test does not flush itself)."""
        deadline = time.monotonic() + timeout
        while True:
            if predicate(self):
                return True
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            with self._arrived:
                self._arrived.wait(min(remaining, 0.05))


# ---- OTLP/gRPC ------------------------------------------------------------------------------


@dataclass
class GrpcRequest:
    service: str  # "traces" or "metrics"
    metadata: dict[str, str]
    message: Any


class GrpcReceiver:
    """OTLP gRPC receiver (TraceService and MetricsService) recording messages and metadata.

    ``status`` (a ``grpc.StatusCode``, changeable while it runs) makes every call fail with it after
    recording the message; ``hold()`` / ``release()``, ``stop()`` / ``start()`` and ``tls`` work as
    for ``HttpReceiver``.
    """

    def __init__(self, *, status: grpc.StatusCode | None = None, tls: ServerTls | None = None) -> None:
        self.status = status
        self.tls = tls
        self.requests: list[GrpcRequest] = []
        self._lock = threading.Lock()
        self._released = threading.Event()
        self._held = False
        self.port = 0
        self._build()
        scheme = "https" if tls is not None else "http"
        self.endpoint = f"{scheme}://127.0.0.1:{self.port}"

    def _build(self) -> None:
        receiver = self

        def answer(service: str, request: Any, context: Any, response: Any) -> Any:
            receiver._record(service, request, context)
            if receiver._held:
                receiver._released.wait(3600.0)
            if receiver.status is not None:
                context.abort(receiver.status, f"test receiver answers {receiver.status.name}")
            return response

        class Traces(trace_service_pb2_grpc.TraceServiceServicer):
            def Export(self, request: Any, context: Any) -> Any:  # noqa: N802 - generated name
                return answer("traces", request, context, trace_service_pb2.ExportTraceServiceResponse())

        class Metrics(metrics_service_pb2_grpc.MetricsServiceServicer):
            def Export(self, request: Any, context: Any) -> Any:  # noqa: N802 - generated name
                return answer("metrics", request, context, metrics_service_pb2.ExportMetricsServiceResponse())

        self._server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        trace_service_pb2_grpc.add_TraceServiceServicer_to_server(Traces(), self._server)
        metrics_service_pb2_grpc.add_MetricsServiceServicer_to_server(Metrics(), self._server)
        address = f"127.0.0.1:{self.port}"
        if self.tls is None:
            self.port = self._server.add_insecure_port(address)
        else:
            credentials = grpc.ssl_server_credentials(
                [(self.tls.key.read_bytes(), self.tls.cert_chain.read_bytes())],
                root_certificates=self.tls.client_ca.read_bytes() if self.tls.client_ca else None,
                require_client_auth=self.tls.client_ca is not None,
            )
            self.port = self._server.add_secure_port(address, credentials)
        self._started = False

    def start(self) -> GrpcReceiver:
        """Starts serving; after ``stop()``, serves again on the same port."""
        if self._started:
            self._build()
        self._server.start()
        self._started = True
        return self

    def hold(self) -> None:
        self._released = threading.Event()
        self._held = True

    def release(self) -> None:
        self._held = False
        self._released.set()

    def stop(self) -> None:
        self.release()
        self._server.stop(grace=None).wait(5)

    def __enter__(self) -> GrpcReceiver:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def _record(self, service: str, message: Any, context: Any) -> None:
        metadata = {k: v for k, v in context.invocation_metadata()}
        with self._lock:
            self.requests.append(GrpcRequest(service, metadata, message))

    def requests_for(self, service: str) -> list[GrpcRequest]:
        with self._lock:
            return [r for r in self.requests if r.service == service]

    def spans(self) -> list[ReceivedSpan]:
        return spans_of([r.message for r in self.requests_for("traces")])

    def metrics(self) -> list[ReceivedMetric]:
        return metrics_of([r.message for r in self.requests_for("metrics")])

    def latest_metrics(self) -> list[ReceivedMetric]:
        return metrics_of([r.message for r in self.requests_for("metrics")][-1:])

    def wait_for(self, predicate: Any, timeout: float = 10.0) -> bool:
        """Waits until ``predicate(self)`` holds."""
        deadline = time.monotonic() + timeout
        while not predicate(self):
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.02)
        return True
