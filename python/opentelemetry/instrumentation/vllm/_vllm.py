"""Everything this package knows about vLLM's objects and their differences between versions.

Capabilities are detected (attributes, signatures), never inferred from version strings. Values
vLLM does not provide stay None: the core then records nothing for them.

Facts relied on (see the vLLM reference notes):
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
import time
from collections.abc import Sequence
from typing import Any

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


def llm_engine(llm: Any) -> Any:
    return getattr(llm, "llm_engine", None)


def chat_conversations(args: tuple, kwargs: dict) -> list | None:
    """LLM.chat's ``messages`` as a list of conversations (it takes one or a list of them)."""
    messages = kwargs.get("messages", args[0] if args else None)
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


class AddRequestArguments:
    """Positions of LLMEngine.add_request's parameters, read from its signature once."""

    NAMES = ("request_id", "prompt", "params", "arrival_time", "lora_request", "priority", "prompt_text")

    def __init__(self, add_request: Any) -> None:
        try:
            parameters = list(inspect.signature(add_request).parameters)
        except (TypeError, ValueError):
            parameters = ["self", *self.NAMES]
        if parameters and parameters[0] == "self":
            parameters = parameters[1:]
        self.position = {name: parameters.index(name) for name in self.NAMES if name in parameters}

    def get(self, name: str, args: tuple, kwargs: dict) -> Any:
        if name in kwargs:
            return kwargs[name]
        index = self.position.get(name)
        if index is not None and index < len(args):
            return args[index]
        return None


def _integer(value: Any) -> int | None:
    """An int as vLLM means it; a bool (an int subclass in Python) is not one."""
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _count(value: Any) -> int | None:
    value = _integer(value)
    return value if value is not None and value >= 0 else None


def _real(value: Any) -> float | None:
    """A finite real number as a float; None for anything else (bools, NaN, ints beyond a float)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        value = float(value)
    except OverflowError:
        return None
    return value if math.isfinite(value) else None


def _length(value: Any) -> int | None:
    """len() of a sequence of token ids; None for anything else (a str's length counts no tokens)."""
    if isinstance(value, Sequence) and not isinstance(value, (str, bytes, bytearray)):
        return len(value)
    return None


def request_attributes(params: Any, lora_request: Any, priority: Any) -> dict[str, Any]:
    """Semconv request attributes from SamplingParams (PoolingParams have none of these).

    A value of the wrong type, negative where it cannot be, or not finite is left out: the
    attribute is absent rather than wrong (and a bool never passes for a number).
    """
    attributes: dict[str, Any] = {}
    max_tokens = _count(getattr(params, "max_tokens", None))
    if max_tokens is not None:
        attributes["gen_ai.request.max_tokens"] = max_tokens
    for name, key in (
        ("temperature", "gen_ai.request.temperature"),
        ("top_p", "gen_ai.request.top_p"),
        ("frequency_penalty", "gen_ai.request.frequency_penalty"),
        ("presence_penalty", "gen_ai.request.presence_penalty"),
    ):
        value = _real(getattr(params, name, None))
        if value is not None:
            attributes[key] = value
    top_k = _real(_integer(getattr(params, "top_k", None)))
    # vLLM uses -1 (older) or 0 (newer) for "top-k disabled": no top-k was requested.
    if top_k is not None and top_k > 0:
        attributes["gen_ai.request.top_k"] = top_k  # a double in semconv v1.41
    seed = _integer(getattr(params, "seed", None))
    if seed is not None:
        attributes["gen_ai.request.seed"] = seed
    stop = getattr(params, "stop", None)
    if isinstance(stop, str):
        stop = [stop]
    if isinstance(stop, (list, tuple)):
        stop = [s for s in stop if isinstance(s, str)]
        if stop:
            attributes["gen_ai.request.stop_sequences"] = stop
    n = _integer(getattr(params, "n", None))
    if n is not None and n > 1:  # semconv: only when not 1
        attributes["gen_ai.request.choice.count"] = n
    lora_name = getattr(lora_request, "lora_name", None) or getattr(lora_request, "name", None)
    if lora_name:
        attributes["vllm.lora.name"] = str(lora_name)
    priority = _integer(priority)
    if priority:
        attributes["vllm.request.priority"] = priority
    return attributes


def request_stats(output: Any) -> Any:
    """RequestOutput.metrics: a RequestStateStats with stats on (>= 0.11.1), else None."""
    return getattr(output, "metrics", None)


def _positive(value: Any) -> float | None:
    value = _real(value)
    return value if value is not None and value > 0 else None


def _difference(later: float | None, earlier: float | None) -> float | None:
    if later is None or earlier is None or later < earlier:
        return None
    return later - earlier


def timings(stats: Any, end_wall: float) -> tuple:
    """(start_ns or None, ttft, tpot, queue, prefill, decode, inference, e2e, preemptions) from a
    RequestStateStats, computed as vLLM computes them; all None without stats."""
    if stats is None:
        return (None,) * 9
    arrival = _positive(getattr(stats, "arrival_time", None))
    queued = _positive(getattr(stats, "queued_ts", None))
    scheduled = _positive(getattr(stats, "scheduled_ts", None))
    first = _positive(getattr(stats, "first_token_ts", None))
    last = _positive(getattr(stats, "last_token_ts", None))
    generated = _count(getattr(stats, "num_generation_tokens", None))
    decode = _difference(last, first)
    tpot = decode / (generated - 1) if decode is not None and generated is not None and generated > 1 else None
    # An arrival after the request finished is no start time (the caller uses add_request's time).
    start_ns = int(arrival * 1e9) if arrival is not None and arrival <= end_wall else None
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


def is_finished(output: Any) -> bool:
    return bool(getattr(output, "finished", False))


def completions(output: Any) -> Any:
    completions = getattr(output, "outputs", None)
    return completions if isinstance(completions, list) else None


def now_ns() -> int:
    return time.time_ns()
