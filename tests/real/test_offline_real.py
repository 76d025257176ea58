"""vllm.LLM (the offline API) on real vLLM, instrumented; every assertion is on decoded OTLP.

One generative ``LLM`` serves every test of this module. Each call runs inside a span of the test's
own (Python SDK) tracer, so the test finds its telemetry by trace id; histograms are compared as the
difference between the cumulative exports before and after the call.
"""

from __future__ import annotations

import time

import pytest
from real_helpers import (
    METRIC_OPERATION_DURATION,
    METRIC_REQUEST_DURATION,
    METRIC_TOKEN_USAGE,
    METRIC_TPOT,
    METRIC_TTFT,
    SERVICE_NAME,
    TPOT,
    TTFT,
    by_response_id,
    check_batch,
    check_operation_span,
    check_request_span,
    children,
    expected_timings,
    expects_metrics,
    histogram_delta,
)

pytestmark = pytest.mark.usefixtures("no_pending_requests")

PROMPTS = [
    "The quick brown fox",
    "OpenTelemetry is a collection of APIs",
    "What is the capital of France?",
    "A span represents a unit of work",
]


def _model(llm) -> str:
    return llm.llm_engine.model_config.model


def _check_histograms(before, after, *, operation, model, outputs, calls=1) -> None:
    """One operation-duration count per call; request-level histograms once per request, with the
    values on the spans (TTFT sum == sum of vLLM's first_token_latency)."""
    base = {"gen_ai__operation__name": operation, "gen_ai__request__model": model, "gen_ai__provider__name": "vllm"}
    count, _ = histogram_delta(before, after, METRIC_OPERATION_DURATION, **base)
    assert count == calls, f"{METRIC_OPERATION_DURATION}: {count} points for {calls} call(s)"
    n = len(outputs)
    count, _ = histogram_delta(before, after, METRIC_REQUEST_DURATION, **base)
    assert count == n
    for token_type in ("input", "output"):
        count, _ = histogram_delta(before, after, METRIC_TOKEN_USAGE, **base, gen_ai__token__type=token_type)
        assert count == n, f"token usage ({token_type}): {count} for {n} requests"
    _, input_sum = histogram_delta(before, after, METRIC_TOKEN_USAGE, **base, gen_ai__token__type="input")
    assert input_sum == sum(len(o.prompt_token_ids) for o in outputs)
    _, output_sum = histogram_delta(before, after, METRIC_TOKEN_USAGE, **base, gen_ai__token__type="output")
    assert output_sum == sum(len(c.token_ids) for o in outputs for c in o.outputs)

    stats = [o.metrics for o in outputs if getattr(o, "metrics", None) is not None]
    count, total = histogram_delta(before, after, METRIC_TTFT, **base)
    assert count == len(stats), f"{METRIC_TTFT}: {count} points for {len(stats)} requests with stats"
    assert total == pytest.approx(sum(m.first_token_latency for m in stats), rel=1e-6, abs=1e-9)
    tpots = [expected_timings(m)[TPOT] for m in stats]
    tpots = [t for t in tpots if t is not None]
    count, total = histogram_delta(before, after, METRIC_TPOT, **base)
    assert count == len(tpots)
    assert total == pytest.approx(sum(tpots), rel=1e-6, abs=1e-9)


def test_generate_batch(llm, telemetry, call):
    from vllm import SamplingParams

    model = _model(llm)
    params = SamplingParams(max_tokens=8, temperature=0.8, top_p=0.95, seed=7, ignore_eos=True)
    before = telemetry.histograms()
    with call() as c:
        outputs = llm.generate(PROMPTS, params, use_tqdm=False)
    after = telemetry.histograms()

    assert len(outputs) == len(PROMPTS)
    spans = telemetry.spans_in_trace(c.trace_id)
    check_batch(
        spans,
        outputs,
        operation="text_completion",
        model=model,
        parent=c.parent,
        call_start_ns=c.start_ns,
        call_end_ns=c.end_ns,
        params=params,
        expect_metrics=expects_metrics(),
        service_name=SERVICE_NAME,
    )
    _check_histograms(before, after, operation="text_completion", model=model, outputs=outputs)


def test_the_core_reads_real_outputs_itself(llm, instrumentor, telemetry, call):
    """White box: real vLLM's finished outputs have the shape the core's reader takes (exact floats,
    ints, lists, strs), so none falls back to the shim's slower field-by-field path; the spans are
    the same either way (test_generate_batch checks them), only the cost differs."""
    from vllm import SamplingParams

    offline = instrumentor._offline
    assert offline._calls is not None  # the core begins, reads and ends this call
    left_to_the_shim = []
    shim_reading = offline._record_finished

    def counting(engine, outputs, end_ns):
        left_to_the_shim.extend(o.request_id for o in outputs)
        return shim_reading(engine, outputs, end_ns)

    offline._record_finished = counting
    try:
        with call() as c:
            outputs = llm.generate(PROMPTS, SamplingParams(max_tokens=4), use_tqdm=False)
    finally:
        del offline._record_finished
    assert left_to_the_shim == []
    # The core kept the requests (add_request's replacement registered them there) and took them all.
    assert offline._pending == {}
    assert len(offline._requests) == 0
    telemetry.flush()
    spans = telemetry.spans_in_trace(c.trace_id)
    assert sorted(by_response_id(spans)) == sorted(o.request_id for o in outputs)


def test_generate_n_greater_than_one(llm, telemetry, call):
    from vllm import SamplingParams

    params = SamplingParams(n=3, max_tokens=5, temperature=1.0, seed=3, ignore_eos=True)
    before = telemetry.histograms()
    with call() as c:
        outputs = llm.generate(PROMPTS[:2], params, use_tqdm=False)
    after = telemetry.histograms()

    assert [len(o.outputs) for o in outputs] == [3, 3]
    _, requests = check_batch(
        telemetry.spans_in_trace(c.trace_id),
        outputs,
        operation="text_completion",
        model=_model(llm),
        parent=c.parent,
        call_start_ns=c.start_ns,
        call_end_ns=c.end_ns,
        params=params,
        expect_metrics=expects_metrics(),
    )
    # One span per request (not per completion): 3 x 5 tokens, three finish reasons.
    for span in requests.values():
        assert span.attributes["gen_ai.usage.output_tokens"] == 15
        assert span.attributes["gen_ai.response.finish_reasons"] == ("length",) * 3
        assert span.attributes["gen_ai.request.choice.count"] == 3
    _check_histograms(before, after, operation="text_completion", model=_model(llm), outputs=outputs)


def test_generate_list_of_sampling_params(llm, telemetry, call):
    from vllm import SamplingParams

    # One token (no decode phase, no TPOT), greedy (temperature 0 must still be recorded), top-k, stop.
    params = [
        SamplingParams(max_tokens=1, temperature=0.5, seed=11, ignore_eos=True),
        SamplingParams(max_tokens=6, temperature=0.0, ignore_eos=True),
        SamplingParams(max_tokens=9, temperature=0.7, top_k=5, seed=5, ignore_eos=True),
    ]
    before = telemetry.histograms()
    with call() as c:
        outputs = llm.generate(PROMPTS[:3], params, use_tqdm=False)
    after = telemetry.histograms()

    _, requests = check_batch(
        telemetry.spans_in_trace(c.trace_id),
        outputs,
        operation="text_completion",
        model=_model(llm),
        parent=c.parent,
        call_start_ns=c.start_ns,
        call_end_ns=c.end_ns,
        params=params,
        expect_metrics=expects_metrics(),
    )
    by_tokens = {r.attributes["gen_ai.request.max_tokens"]: r for r in requests.values()}
    assert sorted(by_tokens) == [1, 6, 9]
    assert by_tokens[6].attributes["gen_ai.request.temperature"] == 0.0
    assert by_tokens[9].attributes["gen_ai.request.top_k"] == 5.0
    assert by_tokens[1].attributes["gen_ai.usage.output_tokens"] == 1
    assert TPOT not in by_tokens[1].attributes
    _check_histograms(before, after, operation="text_completion", model=_model(llm), outputs=outputs)


def test_generate_token_id_prompts(llm, telemetry, call):
    from vllm import SamplingParams
    from vllm.inputs import TokensPrompt

    prompts = [
        TokensPrompt(prompt_token_ids=[5, 17, 42, 99, 300]),
        {"prompt_token_ids": [7, 8, 9]},
        {"prompt_token_ids": list(range(10, 40))},
    ]
    params = SamplingParams(max_tokens=4, temperature=0.9, seed=1, ignore_eos=True)
    with call() as c:
        outputs = llm.generate(prompts, params, use_tqdm=False)
    telemetry.flush()

    assert [len(o.prompt_token_ids) for o in outputs] == [5, 3, 30]
    assert all(o.prompt is None for o in outputs)
    _, requests = check_batch(
        telemetry.spans_in_trace(c.trace_id),
        outputs,
        operation="text_completion",
        model=_model(llm),
        parent=c.parent,
        call_start_ns=c.start_ns,
        call_end_ns=c.end_ns,
        params=params,
        expect_metrics=expects_metrics(),
    )
    assert sorted(r.attributes["gen_ai.usage.input_tokens"] for r in requests.values()) == [3, 5, 30]


def test_chat(llm, telemetry, call):
    from vllm import SamplingParams

    conversations = [
        [
            {"role": "system", "content": "You are a helpful assistant."},
            {"role": "user", "content": "What is the capital of France?"},
        ],
        [{"role": "user", "content": "Tell me a short story about a robot."}],
    ]
    params = SamplingParams(max_tokens=6, temperature=0.8, seed=2, ignore_eos=True)
    before = telemetry.histograms()
    with call() as c:
        outputs = llm.chat(conversations, params, use_tqdm=False)
    after = telemetry.histograms()

    # chat -> generate inside vLLM <= 0.14: still one operation span, named chat.
    check_batch(
        telemetry.spans_in_trace(c.trace_id),
        outputs,
        operation="chat",
        model=_model(llm),
        parent=c.parent,
        call_start_ns=c.start_ns,
        call_end_ns=c.end_ns,
        params=params,
        expect_metrics=expects_metrics(),
    )
    _check_histograms(before, after, operation="chat", model=_model(llm), outputs=outputs)
    count, _ = histogram_delta(before, after, METRIC_OPERATION_DURATION, gen_ai__operation__name="text_completion")
    assert count == 0, "chat was also counted as a text_completion operation"


def test_beam_search(llm, telemetry, call):
    from vllm.sampling_params import BeamSearchParams

    model = _model(llm)
    params = BeamSearchParams(beam_width=2, max_tokens=4, ignore_eos=True)
    prompts = [{"prompt": "The quick brown fox"}, {"prompt_token_ids": [5, 6, 7, 8]}]
    before = telemetry.histograms()
    with call() as c:
        results = llm.beam_search(prompts, params)
    after = telemetry.histograms()

    assert len(results) == 2 and all(r.sequences for r in results)
    spans = telemetry.spans_in_trace(c.trace_id)
    # Exactly one span: the operation. vLLM runs one engine request per beam per step (4 steps x up
    # to 2 beams x 2 prompts here); none of them may show up as a request span.
    assert len(spans) == 1, [(s.name, s.attributes.get("gen_ai.response.id")) for s in spans]
    op = spans[0]
    check_operation_span(
        op,
        operation="text_completion",
        model=model,
        parent=c.parent,
        request_count=None,
        call_start_ns=c.start_ns,
        call_end_ns=c.end_ns,
        service_name=SERVICE_NAME,
    )
    base = {"gen_ai__operation__name": "text_completion", "gen_ai__request__model": model}
    assert histogram_delta(before, after, METRIC_OPERATION_DURATION, **base)[0] == 1
    for name in (METRIC_TTFT, METRIC_REQUEST_DURATION, METRIC_TOKEN_USAGE):
        assert histogram_delta(before, after, name, **base)[0] == 0, f"{name} recorded beam-search steps"


def _require(llm, *methods: str) -> None:
    import vllm

    missing = [m for m in methods if not hasattr(llm, m)]
    if missing:
        pytest.skip(f"vLLM {vllm.__version__} has no LLM.{'/'.join(missing)} (added in later vLLM, ~0.2x)")


def _external_id(internal: str) -> str:
    """enqueue() returns vLLM's internal ids, f"{request_id}-{8 random chars}"; RequestOutput and the
    spans carry the request id itself."""
    return str(internal).rsplit("-", 1)[0]


def test_enqueue_and_wait_for_completion(llm, telemetry, call):
    _require(llm, "enqueue", "wait_for_completion")
    from vllm import SamplingParams

    model = _model(llm)
    params = SamplingParams(max_tokens=5, temperature=0.8, seed=4, ignore_eos=True)
    before = telemetry.histograms()
    with call() as c:
        ids_a = llm.enqueue(PROMPTS[:2], params, use_tqdm=False)
        ids_b = llm.enqueue(PROMPTS[2:3], params, use_tqdm=False)
        outputs = llm.wait_for_completion(use_tqdm=False)
    after = telemetry.histograms()

    assert sorted(str(o.request_id) for o in outputs) == sorted(_external_id(i) for i in ids_a + ids_b)
    # enqueue() only adds requests: the operation is wait_for_completion, which runs them all; the
    # request spans start at arrival (in enqueue), before their operation span.
    check_batch(
        telemetry.spans_in_trace(c.trace_id),
        outputs,
        operation="text_completion",
        model=model,
        parent=c.parent,
        call_start_ns=c.start_ns,
        call_end_ns=c.end_ns,
        params=params,
        expect_metrics=expects_metrics(),
        enqueued=True,
    )
    _check_histograms(before, after, operation="text_completion", model=model, outputs=outputs)


def test_enqueue_chat_and_wait_for_completion(llm, telemetry, call):
    _require(llm, "enqueue_chat", "wait_for_completion")
    from vllm import SamplingParams

    params = SamplingParams(max_tokens=3, temperature=0.8, seed=4, ignore_eos=True)
    with call() as c:
        llm.enqueue_chat([{"role": "user", "content": "hi there"}], params, use_tqdm=False)
        outputs = llm.wait_for_completion(use_tqdm=False)
    telemetry.flush()
    check_batch(
        telemetry.spans_in_trace(c.trace_id),
        outputs,
        operation="chat",
        model=_model(llm),
        parent=c.parent,
        call_start_ns=c.start_ns,
        call_end_ns=c.end_ns,
        params=params,
        expect_metrics=expects_metrics(),
        enqueued=True,
    )


def test_enqueue_mixed_with_enqueue_chat(llm, telemetry, call):
    """Completion and chat requests enqueued before one wait_for_completion: each request span keeps
    the operation it was enqueued as, also when requests of both kinds finish in the same engine step.

    EngineCore runs requests as soon as they are enqueued, so the chats start some steps L after the
    completions. With max_tokens 2..40 on both sides, a completion of m tokens and a chat of m - L
    tokens finish in the same step for any L < 39.
    """
    _require(llm, "enqueue", "enqueue_chat", "wait_for_completion")
    from vllm import SamplingParams

    lengths = range(2, 41)
    completion_params = [SamplingParams(max_tokens=m, temperature=0.8, seed=m, ignore_eos=True) for m in lengths]
    chat_params = [SamplingParams(max_tokens=m, temperature=0.8, seed=m, ignore_eos=True) for m in lengths]
    conversations = [[{"role": "user", "content": f"question {m}"}] for m in lengths]
    with call() as c:
        completion_ids = llm.enqueue([f"prompt {m}" for m in lengths], completion_params, use_tqdm=False)
        chat_ids = llm.enqueue_chat(conversations, chat_params, use_tqdm=False)
        outputs = llm.wait_for_completion(use_tqdm=False)
    telemetry.flush()
    assert len(outputs) == 2 * len(lengths)
    spans = telemetry.spans_in_trace(c.trace_id)
    ops = children(spans, c.parent.get_span_context().span_id)
    assert len(ops) == 1
    assert ops[0].attributes["vllm.operation.request_count"] == len(outputs)
    requests = by_response_id(children(spans, ops[0].span_id))
    expected = {_external_id(i): "text_completion" for i in completion_ids}
    expected.update({_external_id(i): "chat" for i in chat_ids})
    assert set(requests) == set(expected)
    wrong = {
        rid: (span.attributes["gen_ai.operation.name"], expected[rid])
        for rid, span in requests.items()
        if span.attributes["gen_ai.operation.name"] != expected[rid]
    }
    assert not wrong, f"request id: (span's operation, enqueued as): {wrong}"


def test_sampling_params_changed_between_calls(llm, telemetry, call):
    """One SamplingParams object, changed between two generate calls: each call's spans carry the
    values that call ran with."""
    from vllm import SamplingParams

    params = SamplingParams(max_tokens=3, temperature=0.5, seed=1, ignore_eos=True)
    with call("first") as first:
        first_outputs = llm.generate(PROMPTS[:2], params, use_tqdm=False)
    params.max_tokens, params.temperature, params.seed = 5, 0.9, 2
    with call("second") as second:
        second_outputs = llm.generate(PROMPTS[:2], params, use_tqdm=False)
    telemetry.flush()
    for c, outputs, (max_tokens, temperature, seed) in (
        (first, first_outputs, (3, 0.5, 1)),
        (second, second_outputs, (5, 0.9, 2)),
    ):
        assert [len(o.outputs[0].token_ids) for o in outputs] == [max_tokens] * 2
        requests = by_response_id(telemetry.spans_in_trace(c.trace_id))
        assert len(requests) == 2
        for span in requests.values():
            a = span.attributes
            assert (a["gen_ai.request.max_tokens"], a["gen_ai.request.temperature"], a["gen_ai.request.seed"]) == (
                max_tokens,
                temperature,
                seed,
            ), c.name


def test_sampling_params_changed_between_enqueues(llm, telemetry, call):
    """The same, between two enqueue calls run by one wait_for_completion."""
    _require(llm, "enqueue", "wait_for_completion")
    from vllm import SamplingParams

    params = SamplingParams(max_tokens=3, temperature=0.5, seed=1, ignore_eos=True)
    with call() as c:
        (first_id,) = llm.enqueue(PROMPTS[:1], params, use_tqdm=False)
        params.max_tokens, params.temperature, params.seed = 5, 0.9, 2
        (second_id,) = llm.enqueue(PROMPTS[1:2], params, use_tqdm=False)
        outputs = llm.wait_for_completion(use_tqdm=False)
    telemetry.flush()
    tokens = {str(o.request_id): len(o.outputs[0].token_ids) for o in outputs}
    first_id, second_id = _external_id(first_id), _external_id(second_id)
    assert tokens == {first_id: 3, second_id: 5}, "vLLM itself did not run each request with its own values"
    requests = by_response_id(telemetry.spans_in_trace(c.trace_id))
    seen = {
        rid: (
            requests[rid].attributes["gen_ai.request.max_tokens"],
            requests[rid].attributes["gen_ai.request.temperature"],
            requests[rid].attributes["gen_ai.request.seed"],
        )
        for rid in (first_id, second_id)
    }
    assert seen == {first_id: (3, 0.5, 1), second_id: (5, 0.9, 2)}


def test_generate_after_enqueue_runs_the_enqueued_requests_too(llm, telemetry, call):
    _require(llm, "enqueue")
    from vllm import SamplingParams

    params = SamplingParams(max_tokens=3, temperature=0.8, seed=4, ignore_eos=True)
    with call() as c:
        llm.enqueue(PROMPTS[:2], params, use_tqdm=False)
        outputs = llm.generate(PROMPTS[2:3], params, use_tqdm=False)
    telemetry.flush()
    assert len(outputs) == 3  # vLLM returns the enqueued requests from generate()
    spans = telemetry.spans_in_trace(c.trace_id)
    (op,) = children(spans, c.parent.get_span_context().span_id)
    requests = by_response_id(children(spans, op.span_id))
    assert set(requests) == {str(o.request_id) for o in outputs}
    assert op.attributes["vllm.operation.request_count"] == len(requests)


def test_generate_without_a_current_span_is_a_root(llm, telemetry):
    from vllm import SamplingParams

    params = SamplingParams(max_tokens=2, temperature=0.8, seed=9, ignore_eos=True)
    start = time.time_ns()
    (output,) = llm.generate(PROMPTS[:1], params, use_tqdm=False)
    end = time.time_ns()
    telemetry.flush()
    matches = [
        s
        for s in telemetry.receiver.spans()
        if s.attributes.get("gen_ai.response.id") == str(output.request_id)
        and s.span.start_time_unix_nano >= start - 1_000
    ]
    assert len(matches) == 1, [s.name for s in matches]
    request = matches[0]
    ops = [s for s in telemetry.receiver.spans() if s.span_id == request.parent_span_id]
    assert len(ops) == 1
    check_operation_span(
        ops[0],
        operation="text_completion",
        model=_model(llm),
        parent=None,
        request_count=1,
        call_start_ns=start,
        call_end_ns=end,
        service_name=SERVICE_NAME,
    )
    check_request_span(
        request,
        output,
        ops[0],
        operation="text_completion",
        model=_model(llm),
        params=params,
        expect_metrics=expects_metrics(),
    )


def test_request_timings_are_vllms_own(llm, telemetry, call):
    """The span attributes are vLLM's numbers, not re-measured ones: TTFT is first_token_latency
    bit for bit (also checked, with the other phases, by every test above)."""
    from vllm import SamplingParams

    params = SamplingParams(max_tokens=12, temperature=0.8, seed=21, ignore_eos=True)
    with call() as c:
        outputs = llm.generate(PROMPTS, params, use_tqdm=False)
    telemetry.flush()
    if not expects_metrics():
        assert all(getattr(o, "metrics", None) is None for o in outputs)
        pytest.skip("this vLLM keeps no per-request stats (RequestOutput.metrics is None before 0.11.1)")
    requests = by_response_id(telemetry.spans_in_trace(c.trace_id))
    for o in outputs:
        assert requests[str(o.request_id)].attributes[TTFT] == o.metrics.first_token_latency


def test_prefix_cache_hits_are_reported(llm, telemetry, call):
    """The same 300-token prompt twice: vLLM serves 256 tokens (two CPU blocks of 128) of the second
    from its prefix cache; the span says so (gen_ai.usage.cache_read.input_tokens)."""
    from vllm import SamplingParams

    prompt = {"prompt_token_ids": list(range(3, 303))}
    params = SamplingParams(max_tokens=2, temperature=0.8, seed=1, ignore_eos=True)
    llm.generate([prompt], params, use_tqdm=False)
    with call() as c:
        outputs = llm.generate([prompt], params, use_tqdm=False)
    telemetry.flush()
    if not getattr(outputs[0], "num_cached_tokens", None):
        pytest.skip(f"no prefix-cache hit in this vLLM (num_cached_tokens={outputs[0].num_cached_tokens!r})")
    _, requests = check_batch(
        telemetry.spans_in_trace(c.trace_id),
        outputs,
        operation="text_completion",
        model=_model(llm),
        parent=c.parent,
        call_start_ns=c.start_ns,
        call_end_ns=c.end_ns,
        params=params,
        expect_metrics=expects_metrics(),
    )
    (span,) = requests.values()
    assert span.attributes["gen_ai.usage.cache_read.input_tokens"] == outputs[0].num_cached_tokens > 0


def test_stop_finish_reason_and_stop_sequences(llm, telemetry, call):
    """A request that stops on a stop token (finish reason "stop") next to one that runs to its
    length; stop strings are recorded as gen_ai.request.stop_sequences."""
    from vllm import SamplingParams

    probe = SamplingParams(max_tokens=8, temperature=0.8, seed=13, ignore_eos=True)
    (first,) = llm.generate(PROMPTS[:1], probe, use_tqdm=False)
    stop_token = first.outputs[0].token_ids[4]
    params = [
        SamplingParams(
            max_tokens=8, temperature=0.8, seed=13, ignore_eos=True, stop_token_ids=[stop_token], stop=["zz-never"]
        ),
        SamplingParams(max_tokens=8, temperature=0.8, seed=13, ignore_eos=True),
    ]
    with call() as c:
        outputs = llm.generate(PROMPTS[:2], params, use_tqdm=False)
    telemetry.flush()
    assert outputs[0].outputs[0].finish_reason == "stop"
    assert outputs[1].outputs[0].finish_reason == "length"
    _, requests = check_batch(
        telemetry.spans_in_trace(c.trace_id),
        outputs,
        operation="text_completion",
        model=_model(llm),
        parent=c.parent,
        call_start_ns=c.start_ns,
        call_end_ns=c.end_ns,
        params=params,
        expect_metrics=expects_metrics(),
    )
    stopped = requests[str(outputs[0].request_id)].attributes
    assert stopped["gen_ai.response.finish_reasons"] == ("stop",)
    assert stopped["gen_ai.request.stop_sequences"] == ("zz-never",)
    assert "gen_ai.request.stop_sequences" not in requests[str(outputs[1].request_id)].attributes


def test_rejected_prompt_marks_the_call_and_its_requests_as_errors(llm, telemetry, call):
    """vLLM rejects the second prompt (longer than max_model_len) after adding the first: the call
    raises, the operation span and the already-added request end with error.type = the exception's
    class, nothing stays registered, and the engine keeps working."""
    from vllm import SamplingParams

    params = SamplingParams(max_tokens=4, temperature=0.8, seed=1, ignore_eos=True)
    with call() as c:
        with pytest.raises(Exception) as raised:  # noqa: B017 - ValueError (0.11), VLLMValidationError (0.32)
            llm.generate([{"prompt_token_ids": [5, 6, 7]}, {"prompt_token_ids": [5] * 600}], params, use_tqdm=False)
    telemetry.flush()
    error_type = type(raised.value).__qualname__
    spans = telemetry.spans_in_trace(c.trace_id)
    ops = children(spans, c.parent.get_span_context().span_id)
    assert len(ops) == 1
    op = ops[0]
    assert op.attributes["error.type"] == error_type
    assert op.span.status.code == 2  # STATUS_CODE_ERROR
    requests = children(spans, op.span_id)
    assert op.attributes["vllm.operation.request_count"] == len(requests) == 1
    (request,) = requests
    assert request.attributes["error.type"] == error_type
    assert request.span.status.code == 2
    assert op.span.start_time_unix_nano <= request.span.start_time_unix_nano
    assert request.span.end_time_unix_nano <= op.span.end_time_unix_nano
    # Nothing vLLM did not report: no token counts, no timings.
    assert not [k for k in request.attributes if k.startswith(("gen_ai.usage.", "gen_ai.latency."))]
    # The engine keeps working. vLLM 0.11.0 does not abort the request it had added, so the next call
    # returns it too: it must not get a second span there.
    orphan_id = request.attributes["gen_ai.response.id"]
    with call("after") as after:
        outputs = llm.generate(PROMPTS[:1], params, use_tqdm=False)
    telemetry.flush()
    assert all(o.finished for o in outputs)
    ours = [o for o in outputs if str(o.request_id) != orphan_id]
    assert len(ours) == 1
    after_spans = telemetry.spans_in_trace(after.trace_id)
    assert orphan_id not in by_response_id(after_spans)
    assert len(after_spans) == 2


@pytest.fixture
def capturing(instrumentor, receiver):
    """The instrumentation re-made with capture_message_content=True for one test, then as before."""
    instrumentor.uninstrument()
    instrumentor.instrument(
        endpoint=receiver.endpoint,
        schedule_delay_ms=600_000,
        metric_export_interval_ms=600_000,
        capture_message_content=True,
    )
    yield
    instrumentor.uninstrument()
    instrumentor.instrument(endpoint=receiver.endpoint, schedule_delay_ms=600_000, metric_export_interval_ms=600_000)


def _captured(telemetry, c, outputs) -> dict:
    """The request span's attributes; checks gen_ai.output.messages against the completions."""
    import json

    spans = telemetry.spans_in_trace(c.trace_id)
    (op,) = children(spans, c.parent.get_span_context().span_id)
    (request,) = children(spans, op.span_id)
    assert request.attributes["gen_ai.response.id"] == str(outputs[0].request_id)
    assert "gen_ai.input.messages" not in op.attributes
    a = request.attributes
    expected_output = [
        {"role": "assistant", "parts": [{"type": "text", "content": o.text}], "finish_reason": o.finish_reason}
        for o in outputs[0].outputs
    ]
    assert json.loads(a["gen_ai.output.messages"]) == expected_output
    return {k: json.loads(v) for k, v in a.items() if k.endswith(".messages")}


@pytest.mark.usefixtures("capturing")
def test_content_capture(llm, telemetry, call):
    """instrument(capture_message_content=True): token-id prompts, chat messages and completions as
    gen_ai.input.messages / gen_ai.output.messages JSON."""
    from vllm import SamplingParams

    params = SamplingParams(max_tokens=4, temperature=0.8, seed=6, ignore_eos=True)
    conversation = [
        {"role": "system", "content": "You are a helpful assistant."},
        {"role": "user", "content": "What is the capital of France?"},
    ]
    with call("tokens") as token_call:
        token_outputs = llm.generate([{"prompt_token_ids": [5, 17, 42]}], params, use_tqdm=False)
    with call("chat") as chat_call:
        chat_outputs = llm.chat(conversation, params, use_tqdm=False)
    telemetry.flush()

    assert _captured(telemetry, token_call, token_outputs)["gen_ai.input.messages"] == [
        {"role": "user", "parts": [{"type": "token_ids", "token_ids": [5, 17, 42]}]}
    ]
    assert _captured(telemetry, chat_call, chat_outputs)["gen_ai.input.messages"] == [
        {"role": m["role"], "parts": [{"type": "text", "content": m["content"]}]} for m in conversation
    ]


@pytest.mark.usefixtures("capturing")
def test_content_capture_of_a_text_prompt(llm, telemetry, call):
    from vllm import SamplingParams

    params = SamplingParams(max_tokens=4, temperature=0.8, seed=6, ignore_eos=True)
    with call("text") as c:
        outputs = llm.generate(["The quick brown fox"], params, use_tqdm=False)
    telemetry.flush()
    assert _captured(telemetry, c, outputs)["gen_ai.input.messages"] == [
        {"role": "user", "parts": [{"type": "text", "content": "The quick brown fox"}]}
    ]


def _wrapped(cls, name: str) -> bool:
    owner = next(k for k in cls.__mro__ if name in vars(k))
    return hasattr(vars(owner)[name], "__wrapped__")


def test_uninstrument_then_instrument_again(llm, instrumentor, receiver, telemetry, call):
    """Runs last in this module: uninstrument() removes every patch from the live vLLM (no spans), and a
    second instrument() patches it once again (one operation span per call, not two)."""
    from vllm import SamplingParams
    from vllm.entrypoints.llm import LLM
    from vllm.v1.engine.llm_engine import LLMEngine

    params = SamplingParams(max_tokens=3, temperature=0.8, seed=8, ignore_eos=True)
    instrumentor.uninstrument()
    try:
        for cls, name in ((LLM, "__init__"), (LLM, "generate"), (LLMEngine, "add_request"), (LLMEngine, "step")):
            assert not _wrapped(cls, name), f"{cls.__name__}.{name} still wrapped after uninstrument()"
        with call("uninstrumented") as c:
            llm.generate(PROMPTS[:2], params, use_tqdm=False)
        telemetry.flush()
        assert telemetry.spans_in_trace(c.trace_id) == []
    finally:
        instrumentor.instrument(
            endpoint=receiver.endpoint, schedule_delay_ms=600_000, metric_export_interval_ms=600_000
        )
    assert instrumentor.is_instrumented_by_opentelemetry
    assert _wrapped(LLM, "generate") and _wrapped(LLMEngine, "step")
    with call("instrumented-again") as c:
        outputs = llm.generate(PROMPTS[:2], params, use_tqdm=False)
    telemetry.flush()
    check_batch(
        telemetry.spans_in_trace(c.trace_id),
        outputs,
        operation="text_completion",
        model=_model(llm),
        parent=c.parent,
        call_start_ns=c.start_ns,
        call_end_ns=c.end_ns,
        params=params,
        expect_metrics=expects_metrics(),
    )
