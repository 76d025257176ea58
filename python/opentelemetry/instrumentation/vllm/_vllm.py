"""Everything this package knows about vLLM's objects and their differences between versions.

Capabilities are detected (attributes, signatures), never inferred from version strings. Values
vLLM does not provide stay None: the core then records nothing for them.

Declared here as data a program can iterate over (an API-drift check reads them against an installed
vLLM): every method the shim patches (``HOOK_POINTS``: module, class, method, versions, the parameters
read from its signature, what the shim does there) and every attribute it reads on the objects vLLM
hands it (``ATTRIBUTES_READ``). The core reads vLLM's objects by the attribute names given here too
(docs/design/attribute-name-readers.md).

Facts relied on:
- Every offline path (generate, chat, encode/embed/classify/score, beam_search, enqueue +
  wait_for_completion) adds its requests through ``LLMEngine.add_request(request_id, prompt, params,
  ...)`` and collects them through ``LLMEngine.step()``; ``RequestOutput.request_id`` is the id
  given to ``add_request``.
- ``RequestOutput.metrics`` is a ``RequestStateStats`` only when stats logging is on (vLLM >= 0.11.1);
  ``arrival_time`` and ``first_token_latency`` are frontend wall clock, the ``*_ts`` fields
  EngineCore monotonic clock: only differences of ``*_ts`` fields are used, never mixed with wall time.
"""

from __future__ import annotations

import inspect
import math
import operator
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from opentelemetry.instrumentation.vllm._core import EngineStateFields, FinishedRequestFields, OutputReaderFields

_isfinite = math.isfinite
_INF = math.inf

LLM_MODULE = "vllm.entrypoints.llm"
LLM_CLASS = "LLM"
ENGINE_MODULES = ("vllm.v1.engine.llm_engine", "vllm.engine.llm_engine")
ENGINE_CLASS = "LLMEngine"

# LLM methods that run an operation -> gen_ai.operation.name. Pooling has no semconv operation of
# its own; "embeddings" is the nearest (documented in the README).
OPERATION_OF_METHOD = {
    "generate": "text_completion",
    "chat": "chat",
    "beam_search": "text_completion",
    "encode": "embeddings",
    "embed": "embeddings",
    "classify": "embeddings",
    "score": "embeddings",
    "reward": "embeddings",
    "wait_for_completion": None,  # named after the enqueued requests it runs
}
# The LLM method whose ``messages`` are conversations (content capture), and the one that runs the
# requests the ENQUEUE_METHODS added.
CONVERSATION_METHOD = "chat"
ENQUEUED_RUNNER_METHOD = "wait_for_completion"
# LLM methods that only add requests, and the operation of the requests they add.
ENQUEUE_METHODS = {"enqueue": "text_completion", "enqueue_chat": "chat"}
# Operations whose internal engine requests are not user requests (one per search step).
OPERATIONS_WITHOUT_REQUEST_SPANS = {"beam_search"}

PROVIDER_NAME = "vllm"


def defining_class(cls: type, name: str) -> type | None:
    """The class in ``cls``'s MRO that defines ``name`` (vLLM >= 0.32 defines LLM's methods on
    mixins; patching there keeps the class dictionaries exactly as they were after unpatching)."""
    for klass in cls.__mro__:
        if name in vars(klass):
            return klass
    return None


# The LLM's attribute holding its LLMEngine.
LLM_ENGINE_ATTRIBUTE = "llm_engine"


def llm_engine(llm: Any) -> Any:
    return getattr(llm, LLM_ENGINE_ATTRIBUTE, None)


def chat_conversations(messages: Any) -> list[Any] | None:
    """LLM.chat's ``messages`` as a list of conversations (it takes one or a list of them)."""
    if not isinstance(messages, list) or not messages:
        return None
    if isinstance(messages[0], dict):
        return [messages]
    return [m if isinstance(m, list) else None for m in messages]


def error_type(output: Any) -> str | None:
    """A finished output that carries an error (PoolingRequestOutput.error in newer vLLM)."""
    return "error" if getattr(output, "error", None) else None


def model_name(engine: Any) -> str | None:
    config = getattr(engine, "model_config", None)
    if config is None:
        config = getattr(getattr(engine, "vllm_config", None), "model_config", None)
    served = getattr(config, "served_model_name", None)
    if isinstance(served, (list, tuple)):
        served = served[0] if served else None
    name = served or getattr(config, "model", None)
    return str(name) if name else None


# LLMEngine.add_request's parameters that the instrumentation reads, in the order its registration
# takes them (after the engine). A name a version lacks is None (prompt_text is 0.11.1+).
ADD_REQUEST_FIELDS = ("request_id", "prompt", "params", "lora_request", "priority", "prompt_text")


class AddRequestArguments:
    """Where LLMEngine.add_request's parameters are passed, read from its signature once: for the
    generic replacement, used only where one with add_request's own parameters cannot be built."""

    def __init__(self, add_request: Any) -> None:
        try:
            parameters = list(inspect.signature(add_request).parameters)
        except (TypeError, ValueError):
            parameters = ["self", *ADD_REQUEST_FIELDS]
        if parameters and parameters[0] == "self":
            parameters = parameters[1:]
        # (name, index) of each field, with an index no call reaches for a name not in the signature.
        self.positions = tuple(
            (name, parameters.index(name) if name in parameters else 1 << 30) for name in ADD_REQUEST_FIELDS
        )

    def fields(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, ...]:
        """The ADD_REQUEST_FIELDS of one call (a valid call passes each parameter either by position
        or by name, never both)."""
        n = len(args)
        return tuple(args[i] if i < n else kwargs.get(name) for name, i in self.positions)


def _integer(value: Any) -> int | None:
    """An int as vLLM means it; a bool (an int subclass in Python) is not one."""
    if type(value) is int:  # the common case first (this runs for every finished request)
        return value
    return value if isinstance(value, int) and not isinstance(value, bool) else None


# Counts the core can record (a signed 64-bit integer); anything larger is no count vLLM made.
MAX_COUNT = 2**63 - 1


def _count(value: Any) -> int | None:
    value = _integer(value)
    return value if value is not None and 0 <= value <= MAX_COUNT else None


def _real(value: Any) -> float | None:
    """A finite real number as a float; None for anything else (bools, NaN, ints beyond a float)."""
    if type(value) is float:  # the common case first (this runs for every finished request)
        return value if _isfinite(value) else None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        value = float(value)
    except OverflowError:
        return None
    return value if math.isfinite(value) else None


def _length(value: Any) -> int | None:
    """len() of a sequence of token ids; None for anything else (a str's length counts no tokens)."""
    if type(value) is list:  # the common case first: isinstance(value, Sequence) is an ABC check
        return len(value)
    if isinstance(value, Sequence) and not isinstance(value, (str, bytes, bytearray)):
        return len(value)
    return None


# Everything request_attributes reads besides priority: these values of the sampling parameters (in
# the order _sampling_values returns them) and these of a LoRA request. Nothing else: the core reuses
# the attributes of the last call whose values were the very same objects (src/offline/known_attributes.rs).
SAMPLING_FIELDS = (
    "max_tokens",
    "temperature",
    "top_p",
    "frequency_penalty",
    "presence_penalty",
    "top_k",
    "seed",
    "stop",
    "n",
    "structured_outputs",
)
# StructuredOutputsParams (SamplingParams.structured_outputs, 0.11.0+): the constraints that ask for
# JSON, and those that constrain text (gen_ai.output.type "json" or "text").
STRUCTURED_OUTPUT_JSON_FIELDS = ("json", "json_object")
STRUCTURED_OUTPUT_TEXT_FIELDS = ("regex", "choice", "grammar", "structural_tag")
LORA_NAME_FIELDS = ("lora_name", "name")
_read_sampling_fields = operator.attrgetter(*SAMPLING_FIELDS)
# Types of parameters found without one of those values (PoolingParams): read name by name, with
# None for what is missing, rather than raising and catching AttributeError for every request.
_PARTIAL_PARAMETER_TYPES: set[type] = set()


def _sampling_values(params: Any) -> tuple[Any, ...]:
    if type(params) not in _PARTIAL_PARAMETER_TYPES:
        try:
            return _read_sampling_fields(params)  # one C call for the nine values
        except AttributeError:
            _PARTIAL_PARAMETER_TYPES.add(type(params))
    return tuple([getattr(params, name, None) for name in SAMPLING_FIELDS])


# gen_ai.request.top_k is an int in the latest GenAI conventions, a double in v1.41.1: set once at
# instrument() from the core's configuration (OTEL_SEMCONV_STABILITY_OPT_IN), before any request.
_top_k_as_int = False


def use_latest_semconv(latest: bool) -> None:
    global _top_k_as_int  # noqa: PLW0603 - one flag, set at instrument() only
    _top_k_as_int = bool(latest)


def output_type(structured_outputs: Any) -> str | None:
    """gen_ai.output.type of a request's structured-output constraint: "json" for a JSON schema or
    JSON object, "text" for a regex, choice, grammar or structural tag; None without one."""
    if structured_outputs is None:
        return None
    if any(getattr(structured_outputs, name, None) for name in STRUCTURED_OUTPUT_JSON_FIELDS):
        return "json"
    if any(getattr(structured_outputs, name, None) for name in STRUCTURED_OUTPUT_TEXT_FIELDS):
        return "text"
    return None


def request_attributes(params: Any, lora_request: Any, priority: Any) -> dict[str, Any]:
    """Semconv request attributes from SamplingParams (PoolingParams have none of these).

    A value of the wrong type, negative where it cannot be, or not finite is left out: the
    attribute is absent rather than wrong (and a bool never passes for a number).

    The core calls this once per distinct set of values (src/offline/known_attributes.rs), not per request:
    the values are read in one call, each value of the usual type is taken inline, and only others
    go through _count, _real and _integer.
    """
    (max_tokens, temperature, top_p, frequency_penalty, presence_penalty, top_k, seed, stop, n, structured) = (
        _sampling_values(params)
    )
    attributes: dict[str, Any] = {}
    if type(max_tokens) is not int or not 0 <= max_tokens <= MAX_COUNT:
        max_tokens = _count(max_tokens)
    if max_tokens is not None:
        attributes["gen_ai.request.max_tokens"] = max_tokens
    for key, value in (
        ("gen_ai.request.temperature", temperature),
        ("gen_ai.request.top_p", top_p),
        ("gen_ai.request.frequency_penalty", frequency_penalty),
        ("gen_ai.request.presence_penalty", presence_penalty),
    ):
        if type(value) is not float or not _isfinite(value):
            value = _real(value)
        if value is not None:
            attributes[key] = value
    # vLLM uses -1 (older) or 0 (newer) for "top-k disabled": no top-k was requested.
    top_k = None if type(top_k) is int and top_k <= 0 else _integer(top_k)
    if top_k is not None and top_k > 0:
        # A double in semconv v1.41.1, an int in the latest conventions.
        top_k = _count(top_k) if _top_k_as_int else _real(top_k)
        if top_k is not None:
            attributes["gen_ai.request.top_k"] = top_k
    if seed is not None and type(seed) is not int:
        seed = _integer(seed)
    if seed is not None:
        attributes["gen_ai.request.seed"] = seed
    if stop or isinstance(stop, str):  # vLLM's default is an empty list
        if isinstance(stop, str):
            stop = [stop]
        if isinstance(stop, (list, tuple)):
            stop = [s for s in stop if isinstance(s, str)]
            if stop:
                attributes["gen_ai.request.stop_sequences"] = stop
    if type(n) is not int:
        n = _integer(n)
    if n is not None and n > 1:  # semconv: only when not 1
        attributes["gen_ai.request.choice.count"] = n
    if structured is not None:
        kind = output_type(structured)
        if kind is not None:
            attributes["gen_ai.output.type"] = kind
    if lora_request is not None:
        lora_name = getattr(lora_request, LORA_NAME_FIELDS[0], None) or getattr(lora_request, LORA_NAME_FIELDS[1], None)
        if lora_name:
            attributes["vllm.lora.name"] = str(lora_name)
    if priority and type(priority) is not int:  # 0 (the default) is no priority
        priority = _integer(priority)
    if priority:
        attributes["vllm.request.priority"] = priority
    return attributes


def request_stats(output: Any) -> Any:
    """RequestOutput.metrics: a RequestStateStats with stats on (>= 0.11.1), else None."""
    return getattr(output, "metrics", None)


def _positive(value: Any) -> float | None:
    if type(value) is float:  # the common case first; NaN and inf compare False here
        return value if 0 < value < _INF else None
    value = _real(value)
    return value if value is not None and value > 0 else None


def _difference(later: float | None, earlier: float | None) -> float | None:
    if later is None or earlier is None or later < earlier:
        return None
    return later - earlier


def _per_token(decode: float | None, generated: int | None) -> float | None:
    """Decode time per output token after the first; None without one, or for a count no float holds."""
    if decode is None or generated is None or generated <= 1:
        return None
    try:
        return decode / (generated - 1)
    except OverflowError:  # an int beyond any float: no count of tokens (found by the property tests)
        return None


# What timings() returns: (start_ns, ttft, tpot, queue, prefill, decode, inference, e2e, preemptions).
Timings = tuple[
    int | None,
    float | None,
    float | None,
    float | None,
    float | None,
    float | None,
    float | None,
    float | None,
    int | None,
]


def _timings_of_clean_stats(stats: Any, end_wall: float) -> Timings | None:
    """timings() for the usual RequestStateStats (every timestamp a positive finite float, the
    token count an int), in fewer Python operations: this runs for every finished request. None
    for anything else, which timings() then checks field by field (with the same results)."""
    get = getattr
    arrival = get(stats, "arrival_time", None)
    queued = get(stats, "queued_ts", None)
    scheduled = get(stats, "scheduled_ts", None)
    first = get(stats, "first_token_ts", None)
    last = get(stats, "last_token_ts", None)
    ttft = get(stats, "first_token_latency", None)
    generated = get(stats, "num_generation_tokens", None)
    if not (
        type(arrival) is float
        and type(queued) is float
        and type(scheduled) is float
        and type(first) is float
        and type(last) is float
        and type(ttft) is float
        and type(generated) is int
        and 0 < arrival < _INF
        and 0 < queued < _INF
        and 0 < scheduled < _INF
        and 0 < first < _INF
        and 0 < last < _INF
        and 0 < ttft < _INF
        and generated >= 0
    ):
        return None
    decode = last - first if last >= first else None
    return (
        (int(arrival * 1e9) or None) if arrival <= end_wall else None,
        ttft,
        _per_token(decode, generated),
        scheduled - queued if scheduled >= queued else None,
        first - scheduled if first >= scheduled else None,
        decode,
        last - scheduled if last >= scheduled else None,
        _difference(end_wall, arrival),
        _count(get(stats, "num_preemptions", None)),
    )


def timings(stats: Any, end_wall: float) -> Timings:
    """(start_ns or None, ttft, tpot, queue, prefill, decode, inference, e2e, preemptions) from a
    RequestStateStats, computed as vLLM computes them; all None without stats."""
    if stats is None:
        return (None,) * 9
    fast = _timings_of_clean_stats(stats, end_wall)
    if fast is not None:
        return fast
    arrival = _positive(getattr(stats, "arrival_time", None))
    queued = _positive(getattr(stats, "queued_ts", None))
    scheduled = _positive(getattr(stats, "scheduled_ts", None))
    first = _positive(getattr(stats, "first_token_ts", None))
    last = _positive(getattr(stats, "last_token_ts", None))
    generated = _count(getattr(stats, "num_generation_tokens", None))
    decode = _difference(last, first)
    tpot = _per_token(decode, generated)
    # An arrival after the request finished is no start time (the caller uses add_request's time).
    # (An arrival under 1 ns after the epoch, 0 as nanoseconds, is none either.)
    start_ns = (int(arrival * 1e9) or None) if arrival is not None and arrival <= end_wall else None
    return (
        start_ns,
        _positive(getattr(stats, "first_token_latency", None)),
        tpot,
        _difference(scheduled, queued),
        _difference(first, scheduled),
        decode,
        _difference(last, scheduled),
        _difference(end_wall, arrival),  # vLLM: time.time() - arrival_time at the final iteration
        _count(getattr(stats, "num_preemptions", None)),
    )


def token_counts(output: Any) -> tuple[int | None, int | None, int | None]:
    """(input, output, cached input) tokens of a finished output, counted from token ids."""
    input_tokens = _length(getattr(output, "prompt_token_ids", None))
    completions = getattr(output, "outputs", None)
    output_tokens = None
    if isinstance(completions, list):
        counted = [n for n in (_length(getattr(c, "token_ids", None)) for c in completions) if n is not None]
        output_tokens = sum(counted) if counted else None
    return input_tokens, output_tokens, _count(getattr(output, "num_cached_tokens", None))


def finish_reasons(output: Any) -> list[str] | None:
    completions = getattr(output, "outputs", None)
    if not isinstance(completions, list):
        return None  # pooling outputs have no completions
    # CompletionOutput.finish_reason is a str or None; an unknown reason is kept as vLLM wrote it,
    # anything that is not a str is left out rather than turned into one.
    reasons = (getattr(c, "finish_reason", None) for c in completions)
    return [r for r in reasons if isinstance(r, str)]


# The fields of a finished RequestOutput that the core reads itself on the hot path
# (``_core.OutputReader``): by name, the attributes that timings(), token_counts(), finish_reasons()
# and error_type() read, and which two timestamps each duration is the difference of. The core
# takes only outputs of the clean shape (exact floats, ints, lists, strs) and leaves every other
# one to those functions, so both give the same record.
FINISHED_OUTPUT_FIELDS: OutputReaderFields = {
    "finished": "finished",
    "request_id": "request_id",
    "prompt_token_ids": "prompt_token_ids",
    "completions": "outputs",
    "completion_token_ids": "token_ids",
    "finish_reason": "finish_reason",
    "cached_tokens": "num_cached_tokens",
    "error": "error",
    "stats": "metrics",
    "arrival_wall": "arrival_time",
    "time_to_first_token": "first_token_latency",
    "generated_tokens": "num_generation_tokens",
    "preemptions": "num_preemptions",
    "queue": ("queued_ts", "scheduled_ts"),
    "prefill": ("scheduled_ts", "first_token_ts"),
    "decode": ("first_token_ts", "last_token_ts"),
    "inference": ("scheduled_ts", "last_token_ts"),
}


def is_finished(output: Any) -> bool:
    return bool(getattr(output, "finished", False))


def completions(output: Any) -> Any:
    completions = getattr(output, "outputs", None)
    return completions if isinstance(completions, list) else None


# Wall-clock ns, the clock of vLLM's arrival_time; the C function itself (this runs per request).
now_ns = time.time_ns


# ---- serving: AsyncLLM and the OpenAI-compatible server ---------------------------------------
#
# Facts relied on (vLLM 0.11.1 - 0.33):
# - Each API-server process builds one ``AsyncLLM``; its ``output_processor`` (an OutputProcessor)
#   registers each engine request in ``add_request(request, prompt, parent_req, index, queue)``
#   (in the HTTP request's task, before the request is sent to EngineCore), and, once per engine
#   step, ``process_outputs`` calls ``_update_stats_from_finished(req_state, finish_reason,
#   iteration_stats)`` for each request that finished in that step. ``abort_requests`` pops the
#   states of aborted requests (client disconnects) without that call.
# - 0.33 added one more way out: an engine-core output carrying a request error (a request rejected
#   on arrival: engine paused, failed validation in EngineCore; a structured-output grammar that did
#   not compile) makes ``process_outputs`` put the error's exception in the request's queue and call
#   ``_finish_request(req_state)`` alone, without ``_update_stats_from_finished``.
# - ``EngineCoreRequest.trace_headers`` is what vLLM's own tracing parents its ``llm_request`` span to.
# - The OpenAI handlers name their request ids after the endpoint ("chatcmpl-", "cmpl-", ...).
# - ``logger_manager.record(scheduler_stats=, iteration_stats=, engine_idx=)`` runs once per engine
#   step when stats are on (the ``vllm serve`` default).

ASYNC_LLM_MODULE = "vllm.v1.engine.async_llm"
ASYNC_LLM_CLASS = "AsyncLLM"
# AsyncLLM.add_request's parameter with the incoming W3C trace headers (0.11 - 0.33), and the
# EngineCoreRequest's attribute of the same name that vLLM's own tracing parents its span to.
ADD_REQUEST_TRACE_HEADERS = "trace_headers"
ENGINE_REQUEST_TRACE_HEADERS = "trace_headers"
# The OutputProcessor's dict of the states of its requests in flight, by request id.
OUTPUT_PROCESSOR_REQUEST_STATES = "request_states"
# Where the handlers' ``_get_trace_headers`` lives: module -> class (0.32+, then 0.11 - 0.31).
SERVING_BASE_CLASSES = {
    "vllm.entrypoints.serve.engine.serving": "BaseServing",
    "vllm.entrypoints.openai.serving_engine": "OpenAIServing",
}
W3C_TRACE_HEADERS = ("traceparent", "tracestate")

# Request id prefixes of the OpenAI handlers -> gen_ai.operation.name. Pooling endpoints map to
# "embeddings" (as offline); anything else generating text is a "text_completion".
OPERATION_OF_REQUEST_ID_PREFIX = (
    ("chatcmpl-", "chat"),
    ("resp_", "chat"),  # the Responses API
    ("cmpl-", "text_completion"),
    ("embd-", "embeddings"),
)


def async_llm_output_processor(engine: Any) -> Any:
    return getattr(engine, "output_processor", None)


def async_llm_logger_manager(engine: Any) -> Any:
    """The StatLoggerManager (None when stats are off). 0.32's output handler reaches it through a
    one-item list holding the same object, so a patch on the object applies there too."""
    return getattr(engine, "logger_manager", None)


# The span and engine-gauge attribute naming the API-server process a point comes from: vLLM numbers
# them 0..N-1 with --api-server-count N (APIServerProcessManager's client_index, which each process's
# AsyncLLM hands its engine-core client; the process title is "APIServer_<index>").
API_SERVER_INDEX_ATTRIBUTE = "vllm.api_server.index"


def async_llm_api_server_index(engine: Any) -> int | None:
    """This AsyncLLM's API-server index (``client_index`` of its multiprocessing engine-core client,
    0.11.0 to 0.32+; 0 with one API server); None where its client has none (engine in process)."""
    index = getattr(getattr(engine, "engine_core", None), "client_index", None)
    return index if type(index) is int else None


def native_tracing_enabled(output_processor: Any) -> bool:
    """Whether vLLM's own tracing (--otlp-traces-endpoint) is on: a flag in 0.32+, a tracer before."""
    enabled = getattr(output_processor, "tracing_enabled", None)
    if enabled is None:
        enabled = getattr(output_processor, "tracer", None) is not None
    return bool(enabled)


def trace_headers_of(headers: Any) -> dict[str, str] | None:
    """The W3C trace-context headers of an incoming HTTP request (starlette Headers or a mapping)."""
    if headers is None:
        return None
    found = {}
    for name in W3C_TRACE_HEADERS:
        value = headers.get(name)
        if value:
            found[name] = value
    return found if "traceparent" in found else None


# SamplingParams.output_kind (RequestOutputKind) names of a request whose outputs the client gets as
# they are made: the OpenAI server's stream=true is DELTA, stream=false FINAL_ONLY; AsyncLLM.generate's
# default, CUMULATIVE, streams too.
STREAMING_OUTPUT_KINDS = ("DELTA", "CUMULATIVE")
# A RequestState's ParentRequest (parallel_sampling.py), where vLLM split a request of n > 1 into n
# child requests with n=1: its sampling_params are the client's.
REQUEST_STATE_PARENT = "parent_req"
PARENT_REQUEST_PARAMS = "sampling_params"


def add_serving_request_attributes(attributes: dict[str, Any], request: Any) -> None:
    """What only serving knows of an engine request: gen_ai.request.stream (true, and only when the
    request streams)."""
    kind = getattr(getattr(getattr(request, "sampling_params", None), "output_kind", None), "name", None)
    if kind in STREAMING_OUTPUT_KINDS:
        attributes["gen_ai.request.stream"] = True


def add_parent_choice_count(attributes: dict[str, Any], req_state: Any) -> None:
    """gen_ai.request.choice.count of a child of an n > 1 request (serving), from its parent: each
    child's own parameters say n=1. Nothing for any other request (no parent)."""
    parent = getattr(req_state, REQUEST_STATE_PARENT, None)
    if parent is None:
        return
    n = _integer(getattr(getattr(parent, PARENT_REQUEST_PARAMS, None), "n", None))
    if n is not None and n > 1:
        attributes["gen_ai.request.choice.count"] = n


def engine_request_fields(request: Any) -> tuple[str, str, int | None, dict[str, Any]]:
    """What registering an engine request (an ``EngineCoreRequest``) reads of it, in one call: it runs
    for every request a server adds. (The id the handler gave (0.32+ adds a random suffix for the
    engine's internal id), gen_ai.operation.name, the frontend's arrival time in ns or None, the
    request attributes.)"""
    external_id = str(getattr(request, "external_req_id", None) or request.request_id)
    pooling_params = getattr(request, "pooling_params", None)
    if pooling_params is not None:
        operation = "embeddings"
    else:
        operation = "text_completion"
        for prefix, of_prefix in OPERATION_OF_REQUEST_ID_PREFIX:
            if external_id.startswith(prefix):
                operation = of_prefix
                break
    arrival = _positive(getattr(request, "arrival_time", None))  # time.time() in the frontend
    attributes = request_attributes(
        getattr(request, "sampling_params", None) or pooling_params,
        getattr(request, "lora_request", None),
        getattr(request, "priority", None),
    )
    return external_id, operation, int(arrival * 1e9) if arrival is not None else None, attributes


def request_state_stats(req_state: Any) -> Any:
    """The request's RequestStateStats (None with stats off)."""
    return getattr(req_state, "stats", None)


def request_state_token_counts(req_state: Any) -> tuple[int | None, int | None, int | None]:
    """(input, output, cached input) tokens of a request state; output counts the tokens the
    client received (a stop string trims tokens generated past it)."""
    prompt_len = getattr(req_state, "prompt_len", None)
    output_tokens = None
    detokenizer = getattr(req_state, "detokenizer", None)
    if detokenizer is not None:
        count = getattr(detokenizer, "num_output_tokens", None)
        output_tokens = count() if callable(count) else len(detokenizer.output_token_ids)
    cached = getattr(req_state, "num_cached_tokens", None)
    return (
        prompt_len if isinstance(prompt_len, int) else None,
        output_tokens,
        cached if isinstance(cached, int) else None,
    )


def request_state_output_text(req_state: Any) -> str | None:
    detokenizer = getattr(req_state, "detokenizer", None)
    text = getattr(detokenizer, "output_text", None)
    return text if isinstance(text, str) else None


def finish_reason_name(finish_reason: Any) -> str:
    return str(finish_reason)  # FinishReason.__str__ gives the API's name ("stop", "length", ...)


# error.type of a request that finished because vLLM aborted or failed it, by finish reason.
FINISH_ERROR_TYPES = {"abort": "aborted", "error": "error"}
# The finish reason of a request vLLM failed (FinishReason.ERROR's name), for the one path where
# vLLM does not name it (failed_in_engine).
ENGINE_FAILURE_FINISH_REASON = "error"


def error_type_of_finish(reason: str) -> str | None:
    """error.type for a request that finished: vLLM aborted it or failed it."""
    return FINISH_ERROR_TYPES.get(reason)


# What _core.FinishedRequestReader reads of a finished request's RequestState (serving): its stats
# (RequestStateStats, the same fields as a RequestOutput's metrics offline), prompt and cached token
# counts, and the tokens the client received (the detokenizer's num_output_tokens(), or the length of
# its output_token_ids where it has no such method), as request_state_token_counts() reads them.
FINISHED_REQUEST_FIELDS: FinishedRequestFields = {
    "stats": "stats",
    "prompt_tokens": "prompt_len",
    "cached_tokens": "num_cached_tokens",
    "detokenizer": "detokenizer",
    "output_token_count": "num_output_tokens",
    "output_token_ids": "output_token_ids",
    "error_types": list(FINISH_ERROR_TYPES.items()),
    "arrival_wall": FINISHED_OUTPUT_FIELDS["arrival_wall"],
    "time_to_first_token": FINISHED_OUTPUT_FIELDS["time_to_first_token"],
    "generated_tokens": FINISHED_OUTPUT_FIELDS["generated_tokens"],
    "preemptions": FINISHED_OUTPUT_FIELDS["preemptions"],
    "queue": FINISHED_OUTPUT_FIELDS["queue"],
    "prefill": FINISHED_OUTPUT_FIELDS["prefill"],
    "decode": FINISHED_OUTPUT_FIELDS["decode"],
    "inference": FINISHED_OUTPUT_FIELDS["inference"],
}


def iteration_end_wall(iteration_stats: Any) -> float | None:
    """IterationStats.iteration_timestamp: the wall-clock time vLLM's own e2e latency ends at."""
    return _positive(getattr(iteration_stats, "iteration_timestamp", None))


def fails_requests_without_stats_update() -> bool:
    """Whether this vLLM's output processor finishes requests that failed in EngineCore without
    ``_update_stats_from_finished`` (0.33+): its engine-core outputs carry an ``error`` field."""
    engine_module = sys.modules.get("vllm.v1.engine")
    fields = getattr(getattr(engine_module, "EngineCoreOutput", None), "__struct_fields__", ())
    return "error" in fields


# ---- engine failures: the engine-core process died, or the handling of its outputs raised ----------
#
# Facts relied on (vLLM 0.11.1 - 0.32):
# - Serving: AsyncLLM's output handler task catches any Exception (EngineDeadError when the
#   engine-core process died or raised: the client's monitor thread, or the core's ENGINE_CORE_DEAD
#   message, marks the engine dead) and calls ``output_processor.propagate_error(e)`` once, which
#   puts ``e`` in every request's queue; the requests' generate() tasks raise it without aborting
#   them (EngineDeadError) and the OpenAI server exits (its exception handler stops uvicorn). Neither
#   ``_update_stats_from_finished`` nor ``abort_requests`` runs for them.
# - Offline: ``LLMEngine.step`` raises (EngineDeadError from the engine-core client's get_output);
#   the LLM call raises it; the requests' states stay in the engine's ``output_processor``.

# The engine index the failure counter carries: vLLM says which engine failed in neither path (one
# engine-core client per AsyncLLM or LLMEngine, which fails as a whole).
FAILED_ENGINE_INDEX = 0
# The attribute of an LLMEngine holding its OutputProcessor (offline; AsyncLLM's: async_llm_output_processor).
ENGINE_OUTPUT_PROCESSOR = "output_processor"
# The RequestState's id the caller gave (0.32+; before, request_id is that id).
REQUEST_STATE_EXTERNAL_ID = "external_req_id"


# A request in flight when its server shut down (SIGTERM, SIGINT: ``AsyncLLM.shutdown``) is aborted,
# with this reason in this span attribute (its error.type stays FINISH_ERROR_TYPES["abort"]).
ABORT_REASON_ATTRIBUTE = "vllm.request.abort_reason"
SHUTDOWN_ABORT_REASON = "shutdown"


def failure_type(error: BaseException) -> str:
    """error.type of an engine failure: the exception's class, as the offline operation names it."""
    return type(error).__qualname__


def unfinished_request_states(engine: Any) -> dict[str, Any]:
    """An offline LLMEngine's requests still in flight, by the id given to add_request: a copy of
    its output processor's RequestStates (tokens and stats so far). Empty where there are none."""
    states = getattr(getattr(engine, ENGINE_OUTPUT_PROCESSOR, None), OUTPUT_PROCESSOR_REQUEST_STATES, None)
    if not isinstance(states, dict):
        return {}
    by_id = {}
    for request_id, state in states.copy().items():
        external = getattr(state, REQUEST_STATE_EXTERNAL_ID, None)
        by_id[str(external if external is not None else request_id)] = state
    return by_id


def failed_in_engine(req_state: Any) -> bool:
    """Whether vLLM has just failed this request with an engine-core error (0.33+): the request's
    output queue holds the exception its consumer will raise (a RequestOutputCollector keeps it in
    ``output`` until the consumer's task takes it, which cannot happen during process_outputs)."""
    return isinstance(getattr(getattr(req_state, "queue", None), "output", None), BaseException)


# Where the engine gauges are, for _core.EngineStateRecorder: running, waiting and KV-cache usage on
# SchedulerStats (usage was gpu_cache_usage before vLLM 0.10), preemptions of the step on IterationStats.
ENGINE_STATE_ATTRIBUTES: EngineStateFields = {
    "running": "num_running_reqs",
    "waiting": "num_waiting_reqs",
    "usage": ["kv_cache_usage", "gpu_cache_usage"],
    "preempted": "num_preempted_reqs",
}


# multiprocessing names of vLLM's engine-side processes (EngineCore, EngineCore_DP<n>, VllmWorker-<rank>,
# the data-parallel coordinator): they run no frontend objects, so nothing there is instrumented.
ENGINE_PROCESS_NAME_PREFIXES = ("EngineCore", "VllmWorker", "Worker", "DPCoordinator")


def is_engine_process(process_name: str) -> bool:
    return process_name.startswith(ENGINE_PROCESS_NAME_PREFIXES)


# ---- hook points: every vLLM method the shim patches -------------------------------------------
#
# Read at patch time only (never per request). How each kind of patch is made: _patches.py (on the
# class) and _serving.py (on one object); why most are functions generated with the method's own
# parameters rather than wrapt wrappers: docs/design/generated-forwarding.md.

# How the shim patches a hook point.
WRAP = "wrap"  # a wrapt wrapper on the class
REPLACE = "replace"  # a function generated with the method's own parameters, set on the class (else a generic one)
REPLACE_OR_WRAP = "replace_or_wrap"  # a generated function on the class where one can be made, else a wrapt wrapper
INSTANCE = "instance"  # an attribute of one AsyncLLM's own object (generated where possible), not of the class


@dataclass(frozen=True)
class HookPoint:
    """One vLLM method the shim patches.

    ``parameters``: the names the shim reads from (or passes to) the method's signature, in the order
    the generated function reports them (see _forwarding.py); a name a version's signature lacks is
    reported as None (LLM.__init__'s ``disable_log_stats`` is a keyword its ``**kwargs`` passes on to
    EngineArgs). ``reached_through``: for an INSTANCE patch, the attribute of the AsyncLLM that
    holds the object patched; ``modules`` then names where vLLM defines its class, for reading the
    signature without an engine."""

    modules: tuple[str, ...]  # each of these modules that is imported has the class patched
    owner: str  # the class, as vLLM names it (the method may be defined on a base class or mixin)
    method: str
    versions: str  # the vLLM versions the shim patches it in ("all": every vLLM it supports, >= 0.8.0)
    patch: str  # WRAP, REPLACE, REPLACE_OR_WRAP or INSTANCE
    parameters: tuple[str, ...]
    does: str
    reached_through: str | None = None
    optional: bool = False  # absent from some supported versions: skipped where the class lacks it

    @property
    def name(self) -> str:
        return f"{self.owner}.{self.method}"


# LLM.__init__'s keyword (passed on to EngineArgs through its **kwargs) that turns per-request stats off.
DISABLE_LOG_STATS = "disable_log_stats"

# Offline: vllm.LLM and its LLMEngine.
LLM_INIT = HookPoint(
    (LLM_MODULE,),
    LLM_CLASS,
    "__init__",
    "all",
    WRAP,
    (DISABLE_LOG_STATS,),
    "sets disable_log_stats=False unless the caller set it (TTFT, TPOT, queue, prefill and decode come "
    "only from vLLM's per-request stats); warns once where the caller turned them off",
)
# The LLM methods of OPERATION_OF_METHOD that only some of the versions before ENQUEUED_RUNNER_METHOD's
# have (reward: 0.11 has it, 0.32 does not); every supported vLLM has the others.
OPERATIONS_SOME_VERSIONS_LACK = ("reward",)


def _operation_versions(method: str) -> str:
    if method == ENQUEUED_RUNNER_METHOD:
        return "0.32+ (vLLM's enqueue API)"
    return "all (where LLM has it)" if method in OPERATIONS_SOME_VERSIONS_LACK else "all"


# One per LLM method that runs an operation (OPERATION_OF_METHOD); ``messages`` is chat's, read for
# content capture (None for the others).
LLM_OPERATIONS = tuple(
    HookPoint(
        (LLM_MODULE,),
        LLM_CLASS,
        method,
        _operation_versions(method),
        REPLACE,
        ("messages",),
        "one operation span around the call (not for a call inside another); the operation is current "
        "on the thread while it runs",
        optional=method in OPERATIONS_SOME_VERSIONS_LACK or method == ENQUEUED_RUNNER_METHOD,
    )
    for method in OPERATION_OF_METHOD
)
LLM_ENQUEUES = tuple(
    HookPoint(
        (LLM_MODULE,),
        LLM_CLASS,
        method,
        "0.32+",
        WRAP,
        (),
        "names the operation of the requests it adds (run later by wait_for_completion or another call)",
        optional=True,
    )
    for method in ENQUEUE_METHODS
)
ENGINE_ADD_REQUEST = HookPoint(
    ENGINE_MODULES,
    ENGINE_CLASS,
    "add_request",
    "all",
    REPLACE,
    ADD_REQUEST_FIELDS,
    "registers the request (its operation, time, request attributes) after vLLM accepted it",
)
ENGINE_STEP = HookPoint(
    ENGINE_MODULES,
    ENGINE_CLASS,
    "step",
    "all",
    REPLACE,
    (),
    "hands the requests that finished in the step (its returned outputs) to the core, once per step; "
    "where it raises (the engine failed: EngineDeadError), records the engine failure and keeps the "
    "requests' states, so their spans, ended with the LLM call, carry the tokens generated so far",
)

# Serving: AsyncLLM, its output processor and stat-logger manager, the OpenAI handlers.
ASYNC_LLM_INIT = HookPoint(
    (ASYNC_LLM_MODULE,),
    ASYNC_LLM_CLASS,
    "__init__",
    "0.11.1+",
    WRAP,
    (),
    "after vLLM's __init__: sets the INSTANCE patches below on the engine's own objects",
)
ASYNC_LLM_ADD_REQUEST = HookPoint(
    (ASYNC_LLM_MODULE,),
    ASYNC_LLM_CLASS,
    "add_request",
    "0.11.1+",
    REPLACE_OR_WRAP,
    (ADD_REQUEST_TRACE_HEADERS,),
    "where the request came with trace headers: keeps them for the output processor's add_request, and "
    "hands them to vLLM only with vLLM's own tracing on; else vLLM's own coroutine, untouched",
)
ASYNC_LLM_SHUTDOWN = HookPoint(
    (ASYNC_LLM_MODULE,),
    ASYNC_LLM_CLASS,
    "shutdown",
    "0.11.1+",
    WRAP,
    (),
    "the server is shutting down (SIGTERM): requests that end from then on as aborted (0.32's "
    "EngineCore aborts them), or failed (the engine core stopped under them: propagate_error), or "
    "still in flight when it returns, are recorded as aborted with reason 'shutdown', no engine failure",
)
# The OpenAI handlers' _get_trace_headers(headers), on the first class of each pair found.
GET_TRACE_HEADERS = tuple(
    HookPoint(
        (module,),
        owner,
        "_get_trace_headers",
        versions,
        REPLACE_OR_WRAP,
        ("headers",),
        "returns the incoming W3C trace headers whether or not vLLM's own tracing is on (vLLM forwards "
        "them only with it on); vLLM's own method where the request has none",
        optional=True,
    )
    for (module, owner), versions in zip(SERVING_BASE_CLASSES.items(), ("0.32+", "0.11 - 0.31"), strict=True)
)
_OUTPUT_PROCESSOR = ("vllm.v1.engine.output_processor",)
PROCESSOR_ADD_REQUEST = HookPoint(
    _OUTPUT_PROCESSOR,
    "OutputProcessor",
    "add_request",
    "0.11.1+",
    INSTANCE,
    ("request", "prompt"),
    "registers the engine request (parent, ids, operation, attributes) before vLLM takes it",
    reached_through="output_processor",
)
PROCESSOR_PROCESS_OUTPUTS = HookPoint(
    _OUTPUT_PROCESSOR,
    "OutputProcessor",
    "process_outputs",
    "0.11.1+",
    INSTANCE,
    (),
    "after vLLM's processing of a step: records the requests that finished in it, in one call",
    reached_through="output_processor",
)
PROCESSOR_UPDATE_STATS_FROM_FINISHED = HookPoint(
    _OUTPUT_PROCESSOR,
    "OutputProcessor",
    "_update_stats_from_finished",
    "0.11.1+",
    INSTANCE,
    ("req_state", "finish_reason", "iteration_stats"),
    "notes the request as finished (its state, finish reason, the step's end time)",
    reached_through="output_processor",
)
PROCESSOR_ABORT_REQUESTS = HookPoint(
    _OUTPUT_PROCESSOR,
    "OutputProcessor",
    "abort_requests",
    "0.11.1+",
    INSTANCE,
    (),
    "records the requests whose states vLLM dropped without finishing them (client disconnects)",
    reached_through="output_processor",
)
PROCESSOR_PROPAGATE_ERROR = HookPoint(
    _OUTPUT_PROCESSOR,
    "OutputProcessor",
    "propagate_error",
    "0.11.1+",
    INSTANCE,
    ("e",),
    "the engine failed (the output handler's exception, EngineDeadError when the engine core died): "
    "after vLLM hands it to every request, records each request in flight with it, and the failure",
    reached_through="output_processor",
)
PROCESSOR_FINISH_REQUEST = HookPoint(
    _OUTPUT_PROCESSOR,
    "OutputProcessor",
    "_finish_request",
    "0.33+ (present in 0.32; patched only where fails_requests_without_stats_update())",
    INSTANCE,
    ("req_state",),
    "notes a request vLLM failed in EngineCore as finished with reason 'error' (no stats update follows)",
    reached_through="output_processor",
    optional=True,
)
LOGGER_MANAGER_RECORD = HookPoint(
    ("vllm.v1.metrics.loggers",),
    "StatLoggerManager",
    "record",
    "0.11.1+ (with stats on)",
    INSTANCE,
    ("scheduler_stats", "iteration_stats", "engine_idx"),
    "hands the step's stats objects to the core's EngineStateRecorder (the engine gauges)",
    reached_through="logger_manager",
    optional=True,
)
# The output processor's methods always patched on an AsyncLLM (PROCESSOR_FINISH_REQUEST only where needed).
PROCESSOR_HOOKS = (
    PROCESSOR_ADD_REQUEST,
    PROCESSOR_PROCESS_OUTPUTS,
    PROCESSOR_UPDATE_STATS_FROM_FINISHED,
    PROCESSOR_ABORT_REQUESTS,
    PROCESSOR_PROPAGATE_ERROR,
)

HOOK_POINTS: tuple[HookPoint, ...] = (
    LLM_INIT,
    *LLM_OPERATIONS,
    *LLM_ENQUEUES,
    ENGINE_ADD_REQUEST,
    ENGINE_STEP,
    ASYNC_LLM_INIT,
    ASYNC_LLM_ADD_REQUEST,
    ASYNC_LLM_SHUTDOWN,
    *GET_TRACE_HEADERS,
    *PROCESSOR_HOOKS,
    PROCESSOR_FINISH_REQUEST,
    LOGGER_MANAGER_RECORD,
)


# ---- attributes read: every attribute the shim and the core read on objects vLLM hands them -----
#
# vLLM class (as vLLM names it) -> the attribute names read on it (a dict's keys where vLLM hands a
# dict). The core's readers take theirs from FINISHED_OUTPUT_FIELDS, FINISHED_REQUEST_FIELDS and
# ENGINE_STATE_ATTRIBUTES, listed here by what they name; the rest are read by this module's
# functions, except where a comment names the shim module that reads one directly (a hot path, where
# a plain attribute access is cheaper than going through a name).


def _names(fields: Mapping[str, object], *keys: str) -> tuple[str, ...]:
    """The attribute names that ``fields`` (a core reader's table) gives for ``keys``, flattened."""
    names: list[str] = []
    for key in keys:
        value = fields[key]
        if isinstance(value, str):
            names.append(value)
        elif isinstance(value, (tuple, list)):
            names.extend(value)
    return tuple(dict.fromkeys(names))


_STATS_KEYS = (
    "arrival_wall",
    "time_to_first_token",
    "generated_tokens",
    "preemptions",
    "queue",
    "prefill",
    "decode",
    "inference",
)

ATTRIBUTES_READ: dict[str, tuple[str, ...]] = {
    "LLM": (LLM_ENGINE_ATTRIBUTE,),
    # model_name(): the engine's model config, directly or (newer) through its vllm_config.
    # output_processor: unfinished_request_states(), after a failed step.
    "LLMEngine": ("model_config", "vllm_config", ENGINE_OUTPUT_PROCESSOR),
    "AsyncLLM": ("model_config", "vllm_config", "output_processor", "logger_manager", "engine_core"),
    "AsyncMPClient": ("client_index",),  # async_llm_api_server_index()
    "VllmConfig": ("model_config",),
    "ModelConfig": ("served_model_name", "model"),
    "SamplingParams": SAMPLING_FIELDS + ("output_kind",),  # PoolingParams: the same names, where it has them
    # output_type(): which constraint a request's structured_outputs sets.
    "StructuredOutputsParams": STRUCTURED_OUTPUT_JSON_FIELDS + STRUCTURED_OUTPUT_TEXT_FIELDS,
    # add_parent_choice_count(): the client's n of a request vLLM split into n children.
    "ParentRequest": (PARENT_REQUEST_PARAMS,),
    "LoRARequest": LORA_NAME_FIELDS,
    # add_request's prompt (a dict) as _content.py reads it for content capture.
    "PromptType": ("prompt", "prompt_token_ids"),
    "RequestOutput": _names(
        FINISHED_OUTPUT_FIELDS,
        "finished",
        "request_id",
        "prompt_token_ids",
        "completions",
        "cached_tokens",
        "stats",
    ),
    # error_type(): only pooling outputs carry an error (0.32+); read on every finished output.
    "PoolingRequestOutput": _names(FINISHED_OUTPUT_FIELDS, "finished", "request_id", "prompt_token_ids", "error"),
    # text and finish_reason: _content.py, for content capture.
    "CompletionOutput": _names(FINISHED_OUTPUT_FIELDS, "completion_token_ids", "finish_reason") + ("text",),
    "RequestStateStats": _names(FINISHED_OUTPUT_FIELDS, *_STATS_KEYS),
    # engine_request_fields(); request_id and trace_headers (also written) by _serving.py directly.
    "EngineCoreRequest": (
        "external_req_id",
        "request_id",
        "pooling_params",
        "arrival_time",
        "sampling_params",
        "lora_request",
        "priority",
        ENGINE_REQUEST_TRACE_HEADERS,
    ),
    # native_tracing_enabled() (tracing_enabled 0.32+, tracer before); request_states: _serving.py (on abort).
    "OutputProcessor": ("tracing_enabled", "tracer", OUTPUT_PROCESSOR_REQUEST_STATES),
    # request_id: _serving.py directly; queue: failed_in_engine(); external_req_id: unfinished_request_states().
    "RequestState": ("request_id", "queue", REQUEST_STATE_EXTERNAL_ID, REQUEST_STATE_PARENT)
    + _names(FINISHED_REQUEST_FIELDS, "stats", "prompt_tokens", "cached_tokens", "detokenizer"),
    "Detokenizer": _names(FINISHED_REQUEST_FIELDS, "output_token_count", "output_token_ids") + ("output_text",),
    "RequestOutputCollector": ("output",),  # failed_in_engine()
    "IterationStats": ("iteration_timestamp", ENGINE_STATE_ATTRIBUTES["preempted"]),
    "SchedulerStats": _names(ENGINE_STATE_ATTRIBUTES, "running", "waiting", "usage"),
    # fails_requests_without_stats_update(): whether its msgspec fields include "error" (0.33+).
    "EngineCoreOutput": ("__struct_fields__",),
}


# ---- where the classes of ATTRIBUTES_READ are defined, and the shape the readers take ---------
#
# For checking ATTRIBUTES_READ against a vLLM that is installed but not run (the drift tier,
# tests/drift/check_vllm_drift.py); the shim itself never imports these classes.

# ATTRIBUTES_READ's class -> (module, class) where vLLM defines it, the newest first (the first found
# is checked). PromptType is a union of TypedDicts (a dict's keys), not a class: not listed.
ATTRIBUTE_CLASSES: dict[str, tuple[tuple[str, str], ...]] = {
    "LLM": ((LLM_MODULE, LLM_CLASS),),
    "LLMEngine": tuple((module, ENGINE_CLASS) for module in ENGINE_MODULES),
    "AsyncLLM": ((ASYNC_LLM_MODULE, ASYNC_LLM_CLASS),),
    "VllmConfig": (("vllm.config", "VllmConfig"),),
    "ModelConfig": (("vllm.config", "ModelConfig"),),
    "SamplingParams": (("vllm.sampling_params", "SamplingParams"),),
    "StructuredOutputsParams": (("vllm.sampling_params", "StructuredOutputsParams"),),
    "ParentRequest": (("vllm.v1.engine.parallel_sampling", "ParentRequest"),),
    "LoRARequest": (("vllm.lora.request", "LoRARequest"),),
    "RequestOutput": (("vllm.outputs", "RequestOutput"),),
    "CompletionOutput": (("vllm.outputs", "CompletionOutput"),),
    "PoolingRequestOutput": (("vllm.outputs", "PoolingRequestOutput"),),
    "RequestStateStats": (("vllm.v1.metrics.stats", "RequestStateStats"),),
    "EngineCoreRequest": (("vllm.v1.engine", "EngineCoreRequest"),),
    "OutputProcessor": (("vllm.v1.engine.output_processor", "OutputProcessor"),),
    "RequestState": (("vllm.v1.engine.output_processor", "RequestState"),),
    # The detokenizers that keep text (output_text); the others have the token reads too.
    "Detokenizer": (("vllm.v1.engine.detokenizer", "BaseIncrementalDetokenizer"),),
    "RequestOutputCollector": (("vllm.v1.engine.output_processor", "RequestOutputCollector"),),
    "IterationStats": (("vllm.v1.metrics.stats", "IterationStats"),),
    "SchedulerStats": (("vllm.v1.metrics.stats", "SchedulerStats"),),
    "EngineCoreOutput": (("vllm.v1.engine", "EngineCoreOutput"),),
}

# Attributes read as alternatives (the first one a version has; see model_name(),
# native_tracing_enabled(), the engine gauges, request_state_token_counts()): a class needs one of
# each group, not all of them.
ATTRIBUTE_ALTERNATIVES: dict[str, tuple[tuple[str, ...], ...]] = {
    "LLMEngine": (("model_config", "vllm_config"),),
    "AsyncLLM": (("model_config", "vllm_config"),),
    "OutputProcessor": (("tracing_enabled", "tracer"),),
    "SchedulerStats": (tuple(ENGINE_STATE_ATTRIBUTES["usage"]),),
    "Detokenizer": (_names(FINISHED_REQUEST_FIELDS, "output_token_count", "output_token_ids"),),
}

# The types the readers take as the usual shape, by the names vLLM's annotations use (timings(),
# token_counts(), finish_reasons() and the core's readers take exact floats, ints, lists and strs;
# any other value goes the slow way or is left out, so a field whose type changed loses its value
# without an error).
_TIMESTAMP = ("float",)
ATTRIBUTE_TYPES: dict[str, dict[str, tuple[str, ...]]] = {
    "RequestOutput": {
        FINISHED_OUTPUT_FIELDS["finished"]: ("bool",),
        FINISHED_OUTPUT_FIELDS["request_id"]: ("str",),
        FINISHED_OUTPUT_FIELDS["prompt_token_ids"]: ("list",),
        FINISHED_OUTPUT_FIELDS["completions"]: ("list",),
        FINISHED_OUTPUT_FIELDS["cached_tokens"]: ("int",),
        FINISHED_OUTPUT_FIELDS["stats"]: ("RequestStateStats",),
    },
    "CompletionOutput": {
        FINISHED_OUTPUT_FIELDS["completion_token_ids"]: ("list", "Sequence", "GenericSequence"),
        FINISHED_OUTPUT_FIELDS["finish_reason"]: ("str",),
        "text": ("str",),
    },
    "RequestStateStats": {
        **{name: _TIMESTAMP for name in _names(FINISHED_OUTPUT_FIELDS, "arrival_wall", "time_to_first_token")},
        **{name: _TIMESTAMP for name in _names(FINISHED_OUTPUT_FIELDS, "queue", "prefill", "decode", "inference")},
        FINISHED_OUTPUT_FIELDS["generated_tokens"]: ("int",),
        FINISHED_OUTPUT_FIELDS["preemptions"]: ("int",),
    },
    "EngineCoreRequest": {"request_id": ("str",), "arrival_time": _TIMESTAMP, "priority": ("int",)},
    "RequestState": {
        FINISHED_REQUEST_FIELDS["prompt_tokens"]: ("int",),
        FINISHED_REQUEST_FIELDS["cached_tokens"]: ("int",),
        FINISHED_REQUEST_FIELDS["stats"]: ("RequestStateStats",),
    },
    "IterationStats": {"iteration_timestamp": _TIMESTAMP, ENGINE_STATE_ATTRIBUTES["preempted"]: ("int",)},
    "SchedulerStats": {
        ENGINE_STATE_ATTRIBUTES["running"]: ("int",),
        ENGINE_STATE_ATTRIBUTES["waiting"]: ("int",),
        **{name: ("float",) for name in ENGINE_STATE_ATTRIBUTES["usage"]},
    },
}
