"""``_core.OfflineCalls``: the core's begin and end of an LLM call and its report of engine steps
(src/offline/calls.rs), end to end through the fake vLLM tree (tests/fake_vllm, vLLM 0.32 shapes)
and the exported OTLP. What it keeps between calls (the engine's model name, the caller's parent)
must never outlive or mix up what it was read from; what fails must not reach the application.
"""

from __future__ import annotations

import gc
import logging
import threading
import weakref

import pytest
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.instrumentation.vllm import _context, _core, _vllm
from test_offline_fake import LOGGER, MODEL, exported


def test_the_core_begins_ends_and_reads_the_calls_of_a_plain_llm(instrument, http_receiver):
    """White box: without content capture every LLM method but wait_for_completion is the core's."""
    instrumentor = instrument()
    from vllm import LLM, SamplingParams

    offline = instrumentor._offline
    assert offline._calls is not None
    llm = LLM(MODEL)
    outputs = llm.generate(["a", "b"], SamplingParams(max_tokens=2))
    (operation,) = exported(http_receiver).operations
    assert operation.attributes["vllm.operation.request_count"] == 2
    assert sorted(exported(http_receiver).requests) == sorted(o.request_id for o in outputs)
    assert offline._pending == {} and len(offline._requests) == 0


def test_a_deleted_llm_is_not_kept_alive_by_what_the_core_remembers_of_it(instrument, http_receiver):
    # The core keeps the last engine's model name: by a weak reference, or a deleted LLM's engine
    # (and, in real vLLM, its engine-core process) would live on until another LLM is called.
    instrument()
    from vllm import LLM, SamplingParams

    llm = LLM(MODEL)
    llm.generate(["a"], SamplingParams(max_tokens=2))
    engine = weakref.ref(llm.llm_engine)
    del llm
    gc.collect()
    assert engine() is None


def test_engines_called_in_turn_each_get_their_own_model_name(instrument, http_receiver):
    instrument()
    from vllm import LLM, SamplingParams

    first, second = LLM("fake/first"), LLM("fake/second")
    params = SamplingParams(max_tokens=2)
    expected = ["fake/first", "fake/second", "fake/second", "fake/first"]
    for model in expected:
        (first if model == "fake/first" else second).generate([f"prompt for {model}"], params)
    spans = exported(http_receiver).spans
    operations = sorted((s for s in spans if s.parent_span_id == 0), key=lambda s: s.span.start_time_unix_nano)
    assert [o.attributes["gen_ai.request.model"] for o in operations] == expected
    for operation in operations:
        # Each LLM numbers its requests from 0: the request span is found by its parent.
        (request,) = [s for s in spans if s.parent_span_id == int.from_bytes(operation.span.span_id, "big")]
        assert request.attributes["gen_ai.request.model"] == operation.attributes["gen_ai.request.model"]


def test_a_failing_vllm_lookup_leaves_the_call_untraced_and_unharmed(instrument, http_receiver, monkeypatch, caplog):
    def unreadable_model(engine):
        raise RuntimeError("an engine shape nobody expected")

    monkeypatch.setattr(_vllm, "model_name", unreadable_model)
    instrument()
    from vllm import LLM, SamplingParams

    caplog.set_level(logging.DEBUG, logger=LOGGER)
    (output,) = LLM(MODEL).generate(["a"], SamplingParams(max_tokens=2))
    assert output.finished and output.outputs[0].token_ids
    assert exported(http_receiver).operations == []
    (failure,) = [r for r in caplog.records if r.name == LOGGER and "start an operation span" in r.getMessage()]
    assert failure.levelno == logging.DEBUG
    assert isinstance(failure.exc_info[1], RuntimeError)


def test_an_interrupt_raised_inside_the_instrumentation_reaches_the_caller(instrument, monkeypatch):
    # As from the shim's Python: only Exceptions are kept from the application.
    def interrupted(engine):
        raise KeyboardInterrupt

    monkeypatch.setattr(_vllm, "model_name", interrupted)
    instrument()
    from vllm import LLM, SamplingParams

    llm = LLM(MODEL)
    with pytest.raises(KeyboardInterrupt):
        llm.generate(["a"], SamplingParams(max_tokens=2))


def test_the_context_getter_reads_the_context_get_current_reads():
    getter = _context.current_context_getter()
    assert getter is not otel_context.get_current  # the default runtime: its context variable's get
    assert getter() is otel_context.get_current()
    span = trace.NonRecordingSpan(trace.SpanContext(1, 2, False))
    token = otel_context.attach(trace.set_span_in_context(span))
    try:
        assert getter() is otel_context.get_current()
        assert trace.get_current_span(getter()) is span
    finally:
        otel_context.detach(token)
    assert getter() is otel_context.get_current()


def test_another_runtime_context_is_read_through_get_current(monkeypatch):
    class OtherRuntime:
        def get_current(self):
            return otel_context.Context()

    monkeypatch.setattr(otel_context, "_RUNTIME_CONTEXT", OtherRuntime())
    assert _context.current_context_getter() is otel_context.get_current


def test_a_call_is_current_on_its_own_thread_only_and_not_after_it_returns_or_raises(instrument, http_receiver):
    # The call in progress is kept per thread (src/offline/current_operation.rs), as a context variable
    # would be: another thread sees none, and none is left once the call returned or raised.
    instrument()
    from vllm import LLM, SamplingParams
    from vllm.v1.engine.exceptions import EngineDeadError

    llm = LLM(MODEL)
    engine_core = llm.llm_engine.engine_core
    seen: list[tuple[str, object]] = []
    original_step = engine_core.step

    def observing_step():
        seen.append(("caller", _core.current_operation()))
        other = threading.Thread(target=lambda: seen.append(("other thread", _core.current_operation())))
        other.start()
        other.join()
        return original_step()

    engine_core.step = observing_step
    llm.generate(["a"], SamplingParams(max_tokens=2))
    assert _core.current_operation() is None
    callers = {operation for who, operation in seen if who == "caller"}
    assert len(callers) == 1 and None not in callers  # the same operation at every step
    assert {operation for who, operation in seen if who == "other thread"} == {None}

    engine_core.raise_at_step(engine_core.steps + 1, EngineDeadError("engine died"))
    with pytest.raises(EngineDeadError):
        llm.generate(["b"], SamplingParams(max_tokens=2))
    assert _core.current_operation() is None
