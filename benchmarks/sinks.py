"""Loopback OTLP sinks for the benchmarks: accept every export, decode nothing, answer success.

    python benchmarks/sinks.py http|grpc      prints the endpoint on its first line, then serves

HTTP: any POST gets 200 with an empty protobuf body (an empty Export*ServiceResponse). gRPC: every
unary method of the three OTLP collector services gets an empty response (grpcio's generic handler,
raw bytes, so no protobuf classes are needed). Counting is left to the exporting side (the core's
``stats()``), so the sink stays as cheap as possible.
"""

from __future__ import annotations

import http.server
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path


class _HttpSink(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as a collector does

    def do_POST(self):  # noqa: N802 - http.server's naming
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


def serve_http() -> None:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _HttpSink)
    print(f"http://127.0.0.1:{server.server_address[1]}", flush=True)
    server.serve_forever()


def serve_grpc() -> None:
    from concurrent import futures

    import grpc

    def empty(request, context):
        return b""

    handlers = [
        grpc.method_handlers_generic_handler(
            f"opentelemetry.proto.collector.{signal}.v1.{service}",
            {"Export": grpc.unary_unary_rpc_method_handler(empty)},
        )
        for signal, service in (("trace", "TraceService"), ("metrics", "MetricsService"), ("logs", "LogsService"))
    ]
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4), handlers=handlers)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    print(f"http://127.0.0.1:{port}", flush=True)
    server.wait_for_termination()


@contextmanager
def sink(kind: str, python: str = sys.executable):
    """Runs a sink in its own process (so its CPU is not the measured process's); yields its endpoint."""
    proc = subprocess.Popen([python, str(Path(__file__)), kind], stdout=subprocess.PIPE, text=True)
    try:
        endpoint = proc.stdout.readline().strip()
        if not endpoint:
            raise RuntimeError(f"the {kind} sink did not start (exit status {proc.wait(10)})")
        time.sleep(0.1)
        yield endpoint
    finally:
        proc.kill()
        proc.wait()


if __name__ == "__main__":
    {"http": serve_http, "grpc": serve_grpc}[sys.argv[1]]()
