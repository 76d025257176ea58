"""The functions generated from a method's parameter list (``_forwarding.py``): forwarding ones replace
``LLMEngine.add_request``, surrounding ones the LLM calls (``LLM.generate``...). Every argument reaches
the original exactly as given, the named ones are reported, exceptions pass unchanged, and signatures
that cannot be forwarded faithfully are refused."""

from __future__ import annotations

import asyncio
import functools
import inspect

import pytest
from opentelemetry.instrumentation.vllm._forwarding import (
    argument_dispatching_function,
    forwarding_function,
    pending_reporting_function,
    preceding_function,
    result_reporting_function,
    substituting_function,
    surrounding_function,
)

SENTINEL = object()


class Engine:
    def add_request(self, request_id, prompt, params, arrival_time=None, lora_request=SENTINEL, *, priority=0):
        return ("added", request_id, prompt, params, arrival_time, lora_request, priority)


def forwarded(reported=("request_id", "params", "lora_request", "priority", "not_a_parameter")):
    reports = []
    function = forwarding_function(Engine.add_request, lambda *values: reports.append(values), reported)
    assert function is not None
    return function, reports


@pytest.mark.parametrize(
    ("args", "kwargs"),
    [
        (("r1", "p", "sp"), {}),
        (("r1", "p", "sp", 1.5, "lora"), {"priority": 3}),
        (("r1",), {"params": "sp", "prompt": "p", "priority": -1}),
        ((), {"request_id": "r1", "prompt": "p", "params": "sp", "lora_request": None}),
    ],
)
def test_every_argument_reaches_the_original_as_given_and_the_named_ones_are_reported(args, kwargs):
    function, reports = forwarded()
    engine = Engine()
    assert function(engine, *args, **kwargs) == engine.add_request(*args, **kwargs)
    direct = inspect.signature(Engine.add_request).bind(engine, *args, **kwargs)
    direct.apply_defaults()
    given = direct.arguments
    # The defaults reported are the original's own objects (a sentinel stays that sentinel).
    assert reports == [(engine, given["request_id"], given["params"], given["lora_request"], given["priority"], None)]


def test_the_function_has_the_original_signature_and_name():
    function, _ = forwarded()
    assert function.__name__ == "add_request"
    assert str(inspect.signature(function)) == str(inspect.signature(Engine.add_request)).replace("SENTINEL", "")
    original = inspect.signature(Engine.add_request).parameters
    generated = inspect.signature(function).parameters
    assert [(p.name, p.kind) for p in generated.values()] == [(p.name, p.kind) for p in original.values()]
    assert all(generated[name].default is original[name].default for name in original)


def test_a_wrong_call_fails_as_the_original_would_and_nothing_is_reported():
    function, reports = forwarded()
    with pytest.raises(TypeError, match="missing 1 required positional argument: 'params'"):
        function(Engine(), "r1", "p")
    with pytest.raises(TypeError, match="unexpected keyword argument 'bogus'"):
        function(Engine(), "r1", "p", "sp", bogus=1)
    assert reports == []


def test_an_exception_from_the_original_passes_unchanged_and_nothing_is_reported():
    class Refused(Exception):
        pass

    def add_request(self, request_id, params):
        raise Refused(request_id)

    reports = []
    function = forwarding_function(add_request, lambda *values: reports.append(values), ("request_id",))
    with pytest.raises(Refused, match="r9"):
        function(object(), "r9", None)
    assert reports == []
    # A traceback says where the forwarding frame comes from.
    with pytest.raises(Refused) as raised:
        function(object(), "r9", None)
    files = [str(entry.path) for entry in raised.traceback]
    assert any(f.startswith("<opentelemetry-instrumentation-vllm forwarding ") for f in files), files


def _decorated(function):
    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        return function(*args, **kwargs)

    return wrapper


class Refusals:
    def var_positional(self, request_id, *args):
        pass

    def var_keyword(self, request_id, **kwargs):
        pass

    def positional_only(self, request_id, /, params):
        pass

    @_decorated
    def decorated(self, request_id, params):
        pass

    def clashing_name(self, _otel_vllm_original):
        pass

    @staticmethod
    def keyword_only_first(*, request_id):
        pass


@pytest.mark.parametrize(
    "original",
    [
        Refusals.var_positional,
        Refusals.var_keyword,
        Refusals.positional_only,
        Refusals.decorated,
        Refusals.clashing_name,
        Refusals.keyword_only_first,
        len,  # a builtin
        functools.partial(Engine.add_request, None),
    ],
    ids=lambda o: getattr(o, "__name__", type(o).__name__),
)
def test_signatures_that_cannot_be_forwarded_faithfully_are_refused(original):
    assert forwarding_function(original, print, ("request_id",)) is None
    assert surrounding_function(original, print, print, ("request_id",)) is None
    assert result_reporting_function(original, print) is None
    assert argument_dispatching_function(original, "request_id", print) is None
    assert substituting_function(original, print, ("request_id",)) is None


class LLM:
    def chat(self, messages, sampling_params=None, *, use_tqdm=True, lora_request=SENTINEL):
        if messages == "fail":
            raise KeyError(messages)
        return ("chat", messages, sampling_params, use_tqdm, lora_request)


def surrounded(begun="token"):
    calls = []

    def begin(llm, messages, not_a_parameter):
        calls.append(("begin", llm, messages, not_a_parameter))
        return begun

    def end(token, error):
        calls.append(("end", token, error))

    function = surrounding_function(LLM.chat, begin, end, ("messages", "not_a_parameter"))
    assert function is not None
    return function, calls


@pytest.mark.parametrize(
    ("args", "kwargs"),
    [(("hi",), {}), (("hi", "sp"), {"use_tqdm": False}), ((), {"messages": "hi", "lora_request": None})],
)
def test_a_surrounding_function_begins_calls_with_every_argument_as_given_and_ends(args, kwargs):
    function, calls = surrounded()
    llm = LLM()
    assert function(llm, *args, **kwargs) == llm.chat(*args, **kwargs)
    assert calls == [("begin", llm, "hi", None), ("end", "token", None)]
    assert str(inspect.signature(function)) == str(inspect.signature(LLM.chat))


def test_a_surrounding_function_ends_with_the_exception_which_then_passes_unchanged():
    function, calls = surrounded()
    llm = LLM()
    with pytest.raises(KeyError, match="fail") as raised:
        function(llm, "fail")
    assert calls == [("begin", llm, "fail", None), ("end", "token", raised.value)]


def test_where_begin_returns_none_only_the_original_runs():
    function, calls = surrounded(begun=None)
    llm = LLM()
    assert function(llm, "hi") == llm.chat("hi")
    with pytest.raises(KeyError):
        function(llm, "fail")
    assert calls == [("begin", llm, "hi", None), ("begin", llm, "fail", None)]


def test_a_result_reporting_function_reports_only_what_is_true_and_returns_it():
    class Engine:
        def step(self, results=None):
            if results == "fail":
                raise ValueError(results)
            return results

    reports = []
    function = result_reporting_function(Engine.step, lambda *values: reports.append(values))
    engine = Engine()
    outputs = ["finished"]
    assert function(engine, outputs) is outputs
    assert function(engine, []) == []  # a step that finished nothing is not reported
    assert function(engine) is None
    with pytest.raises(ValueError, match="fail"):
        function(engine, results="fail")
    assert reports == [(engine, outputs)]
    assert str(inspect.signature(function)) == str(inspect.signature(Engine.step))


def test_a_pending_reporting_function_reports_after_calls_that_left_something_pending():
    class Processor:
        def process(self, outputs, timestamp=None):
            if outputs == "fail":
                pending.append("half done")
                raise ValueError(outputs)
            pending.extend(outputs)
            return len(outputs)

    pending: list = []
    reports = []

    def report():
        reports.append(list(pending))
        pending.clear()

    function = pending_reporting_function(Processor.process, pending, report)
    processor = Processor()
    assert function(processor, ["a"]) == 1
    assert function(processor, [], timestamp=2.0) == 0  # nothing pending: no report
    with pytest.raises(ValueError, match="fail"):
        function(processor, "fail")  # raised: not reported, left for the next call
    assert function(processor, outputs=["b"]) == 1
    assert reports == [["a"], ["half done", "b"]]
    assert str(inspect.signature(function)) == str(inspect.signature(Processor.process))


def test_a_preceding_function_reports_before_the_original_runs():
    events = []

    class Processor:
        def add_request(self, request, prompt, parent_req=None, *, queue=None):
            events.append(("vllm", request))
            if request == "fail":
                raise ValueError(request)
            return (request, prompt, parent_req, queue)

    function = preceding_function(Processor.add_request, lambda *values: events.append(values), ("request", "prompt"))
    processor = Processor()
    assert function(processor, "r1", "p", queue="q") == ("r1", "p", None, "q")
    with pytest.raises(ValueError, match="fail"):
        function(processor, prompt=None, request="fail")
    assert events == [(processor, "r1", "p"), ("vllm", "r1"), (processor, "fail", None), ("vllm", "fail")]
    assert str(inspect.signature(function)) == str(inspect.signature(Processor.add_request))


class AsyncEngine:
    """A coroutine function with vLLM's AsyncLLM.add_request's kind of parameters."""

    async def add_request(self, request_id, prompt, params, arrival_time=None, trace_headers=None, *, priority=0):
        return ("added", request_id, prompt, params, arrival_time, trace_headers, priority)


def test_an_argument_dispatching_function_hands_back_the_originals_own_coroutine_in_the_usual_case():
    others = []
    function = argument_dispatching_function(
        AsyncEngine.add_request, "trace_headers", lambda *values: others.append(values)
    )
    engine = AsyncEngine()
    for args, kwargs in [
        (("r1", "p", "sp"), {}),
        (("r1", "p", "sp", 1.5, None), {"priority": 2}),
        ((), {"request_id": "r1", "prompt": "p", "params": "sp", "trace_headers": {}}),
    ]:
        coroutine = function(engine, *args, **kwargs)
        # vLLM's coroutine itself, not a second one around it: nothing more to create or await.
        assert coroutine.cr_code is AsyncEngine.add_request.__code__
        assert asyncio.run(coroutine) == asyncio.run(engine.add_request(*args, **kwargs))
    assert others == []
    assert str(inspect.signature(function)) == str(inspect.signature(AsyncEngine.add_request))
    if hasattr(inspect, "markcoroutinefunction"):  # Python 3.12+
        assert inspect.iscoroutinefunction(function)


@pytest.mark.parametrize(
    ("args", "kwargs"),
    [
        (("r1", "p", "sp", None, {"traceparent": "x"}), {"priority": 3}),
        (("r1", "p", "sp"), {"trace_headers": {"traceparent": "x"}}),
    ],
)
def test_where_the_argument_is_set_the_otherwise_path_gets_a_call_with_it_replaced(args, kwargs):
    seen = []

    def otherwise(engine, headers, call):
        seen.append((engine, headers))
        return call(None)

    function = argument_dispatching_function(AsyncEngine.add_request, "trace_headers", otherwise)
    engine = AsyncEngine()
    expected = inspect.signature(AsyncEngine.add_request).bind(engine, *args, **kwargs)
    expected.apply_defaults()
    result = asyncio.run(function(engine, *args, **kwargs))
    assert seen == [(engine, {"traceparent": "x"})]
    given = expected.arguments
    assert result == ("added", given["request_id"], "p", "sp", None, None, given["priority"])


def test_an_argument_dispatching_function_needs_the_named_parameter():
    assert argument_dispatching_function(AsyncEngine.add_request, "no_such_parameter", print) is None


def test_a_substituting_function_returns_the_substitute_or_else_the_originals_own_coroutine():
    class Serving:
        async def _get_trace_headers(self, headers):
            return ("vllm's", headers)

    async def ready(value):
        return value

    seen = []

    def substitute(serving, headers):
        seen.append(headers)
        return ready({"traceparent": headers["traceparent"]}) if "traceparent" in headers else None

    function = substituting_function(Serving._get_trace_headers, substitute, ("headers",))
    serving = Serving()
    assert asyncio.run(function(serving, {"traceparent": "t", "accept": "*/*"})) == {"traceparent": "t"}
    coroutine = function(serving, headers={"accept": "*/*"})
    assert coroutine.cr_code is Serving._get_trace_headers.__code__
    assert asyncio.run(coroutine) == ("vllm's", {"accept": "*/*"})
    assert seen == [{"traceparent": "t", "accept": "*/*"}, {"accept": "*/*"}]
