"""Rust core: spans, semconv histograms, HDR percentiles and OTLP export, off the GIL.

Records are positional tuples (cheapest to build per request in Python). Durations are seconds,
timestamps are integer nanoseconds since the Unix epoch, ids are ints as in
``opentelemetry.trace.SpanContext``. ``None`` means "not provided": the core records nothing for it.
"""

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final, TypedDict

from typing_extensions import Unpack

__version__: str
REQUEST_RECORD_LEN: int  # 17
REQUEST_RECORD_WITH_PARENT_LEN: int  # 19
BATCH_HEADER_LEN: int  # 7
OPERATION_RECORD_LEN: int  # 12

AttributeValue = str | bool | int | float | Sequence[str] | Sequence[bool] | Sequence[int] | Sequence[float]
Attributes = Mapping[str, AttributeValue] | None

# (trace_id, span_id, trace_flags, is_remote)
ParentContext = tuple[int, int, int, bool]

# (operation_name, provider_name, request_model, response_model, parent, span_kind, attributes)
# span_kind: the value of opentelemetry.trace.SpanKind (0 INTERNAL, 1 SERVER, 2 CLIENT, ...).
# attributes: span attributes shared by every request of the batch.
BatchHeader = tuple[str, str, str | None, str | None, ParentContext | None, int, Attributes]

# One finished request. span_id: one reserved with new_span_context, or None to let the core assign one.
RequestRecord = tuple[
    str | None,  # 0 response_id
    int | None,  # 1 span_id
    int,  # 2 start_ns (wall clock)
    int,  # 3 end_ns (wall clock)
    int | None,  # 4 input_tokens
    int | None,  # 5 output_tokens
    int | None,  # 6 cached_input_tokens
    Sequence[str] | None,  # 7 finish_reasons, one per completion
    str | None,  # 8 error_type
    float | None,  # 9 time_to_first_token (s)
    float | None,  # 10 time_per_output_token (s)
    float | None,  # 11 queue (s)
    float | None,  # 12 prefill (s)
    float | None,  # 13 decode (s)
    float | None,  # 14 inference (s)
    float | None,  # 15 e2e (s)
    Attributes,  # 16 extra span attributes of this request
]
# The same with two more fields, for requests that each have their own parent (serving):
#   17 parent: ParentContext | None, replacing the batch header's (None: a root span);
#   18 trace_id: int | None, the trace id new_span_context returned with span_id (for a root span).
RequestRecordWithParent = tuple[
    str | None,
    int | None,
    int,
    int,
    int | None,
    int | None,
    int | None,
    Sequence[str] | None,
    str | None,
    float | None,
    float | None,
    float | None,
    float | None,
    float | None,
    float | None,
    float | None,
    Attributes,
    ParentContext | None,  # 17 parent
    int | None,  # 18 trace_id
]

# One API call, parent of its requests.
OperationRecord = tuple[
    tuple[int, int, int],  # 0 (trace_id, span_id, trace_flags) from new_span_context
    ParentContext | None,  # 1 parent
    str,  # 2 operation_name
    str,  # 3 provider_name
    str | None,  # 4 request_model
    str | None,  # 5 response_model
    int,  # 6 span_kind
    int,  # 7 start_ns
    int,  # 8 end_ns
    str | None,  # 9 error_type
    int | None,  # 10 request_count
    Attributes,  # 11 extra span attributes
]

class LatencyPercentiles(TypedDict):
    metric: str
    model: str
    count: int
    p50: float
    p90: float
    p99: float
    # also "p99.9": float
    max: float

# Bridge callables (see _bridge.py), called once per batch from the core's threads; each returns
# (undelivered, first_error). Spans: a list of (name, kind, trace_id, span_id, parent_span_id or 0,
# parent_is_remote, trace_flags, start_ns, end_ns, attributes, status_code 0/1/2, status_description).
# Measurements: a list of (index into METRICS, attributes, values).
SpanBridge = Callable[[list[tuple[Any, ...]]], tuple[int, str | None]]
MetricBridge = Callable[[list[tuple[int, dict[str, AttributeValue], list[float]]]], tuple[int, str | None]]

# (name, unit, description, bucket boundaries, integer) of every histogram.
METRICS: tuple[tuple[str, str, str, list[float], bool], ...]
# The instruments only the latest GenAI conventions have: indexes len(METRICS) on.
LATEST_METRICS: tuple[tuple[str, str, str, list[float], bool], ...]
# Indexes into METRICS of the counters (every other entry is a histogram).
COUNTER_METRICS: tuple[int, ...]
# (name, unit, description) of the engine gauges (running, waiting, KV-cache usage) and the preemption counter.
ENGINE_METRICS: list[tuple[str, str, str]]
# (name, unit, description) of the engine failure counter (vllm.engine.failures).
ENGINE_FAILURE_METRIC: tuple[str, str, str]

def configure(
    overrides: Mapping[str, str] | None = None,
    python_resource: Attributes = None,
    explicit_resource: Attributes = None,
    span_bridge: SpanBridge | None = None,
    metric_bridge: MetricBridge | None = None,
) -> bool: ...
def is_enabled() -> bool: ...

# (traces, metrics) of the running pipeline: "bridge", "otlp", "console" or "none".
def delivery() -> tuple[str, str] | None: ...
def new_span_context(
    parent: ParentContext | None, operation_name: str, request_model: str | None = None, span_kind: int = 0
) -> tuple[int, int, int]: ...
def record_requests(header: BatchHeader, requests: list[RequestRecord] | list[RequestRecordWithParent]) -> int: ...
def record_operation(operation: OperationRecord) -> bool: ...

# The engines' latest states, for the metric bridge: (provider, model, engine_index, [(attribute, value)]
# given to the engine's EngineStateRecorder, running, waiting, kv_cache_usage, preemptions_total) each.
def engine_states() -> list[
    tuple[str, str | None, int, list[tuple[str, int]], int | None, int | None, float | None, int | None]
]: ...

# One failure of an engine (vllm.engine.failures); False where no pipeline runs.
def record_engine_failure(
    provider: str,
    model: str | None,
    engine_index: int,
    error_type: str | None,
    *,
    attributes: dict[str, int] | None = None,
) -> bool: ...

# The engines' failures so far, for the metric bridge: (provider, model, engine_index, error_type, count) each.
def engine_failures() -> list[tuple[str, str | None, int, list[tuple[str, int]], str, int]]: ...

# The attribute names the readers below take (as keyword arguments), declared in _vllm.py.
class OutputReaderFields(TypedDict):
    """``_vllm.FINISHED_OUTPUT_FIELDS``: a finished RequestOutput's attribute names."""

    finished: str
    request_id: str
    prompt_token_ids: str
    completions: str
    completion_token_ids: str
    finish_reason: str
    cached_tokens: str
    error: str
    stats: str
    arrival_wall: str
    time_to_first_token: str
    generated_tokens: str
    preemptions: str
    queue: tuple[str, str]
    prefill: tuple[str, str]
    decode: tuple[str, str]
    inference: tuple[str, str]

class FinishedRequestFields(TypedDict):
    """``_vllm.FINISHED_REQUEST_FIELDS``: a finished request state's attribute names (serving)."""

    stats: str
    prompt_tokens: str
    cached_tokens: str
    detokenizer: str
    output_token_count: str
    output_token_ids: str
    error_types: list[tuple[str, str]]
    arrival_wall: str
    time_to_first_token: str
    generated_tokens: str
    preemptions: str
    queue: tuple[str, str]
    prefill: tuple[str, str]
    decode: tuple[str, str]
    inference: tuple[str, str]

class EngineStateFields(TypedDict):
    """``_vllm.ENGINE_STATE_ATTRIBUTES``: the engine gauges' attribute names on vLLM's stats objects."""

    running: str
    waiting: str
    usage: list[str]
    preempted: str

class OutputReader:
    """Reads an engine step's finished outputs by the attribute names given (``_vllm.FINISHED_OUTPUT_FIELDS``)
    and records the ones of the usual shape; see ``src/offline/output_reader.rs``."""

    def __init__(self, **fields: Unpack[OutputReaderFields]) -> None: ...
    def record_of(self, output: Any, start_ns: int, end_ns: int) -> RequestRecord | None:
        """For tests: the record this reader would build, attributes None; None where it would leave the output."""

class FinishedRequestReader:
    """Serving: reads the requests an engine step finished (their request states, by the attribute
    names given, ``_vllm.FINISHED_REQUEST_FIELDS``) and records them; see ``src/readers/finished_requests.rs``."""

    def __init__(
        self,
        provider: str,
        model: str | None,
        *,
        attributes: Attributes = None,
        **fields: Unpack[FinishedRequestFields],
    ) -> None:
        """``attributes``: span attributes of every request it records (in their batch header)."""
    def record(self, finished: list[tuple[Any, Any, str, float | None]], end_ns: int) -> list[Any] | None:
        """Records the notes ``(added, request state, finish reason, iteration end or None)`` of one step
        that ended at ``end_ns``; returns those of another shape than the usual, for the shim (None
        where none is left). Records nothing with telemetry off."""

class EngineStateRecorder:
    """Records the engine gauges of one engine's steps, reading vLLM's stats objects by the attribute
    names given (``_vllm.ENGINE_STATE_ATTRIBUTES``)."""

    def __init__(
        self,
        provider: str,
        model: str | None,
        *,
        attributes: Mapping[str, int] | None = None,
        **fields: Unpack[EngineStateFields],
    ) -> None:
        """``attributes``: integer attributes of every point of this engine's gauges."""
    def record(self, owner: object, scheduler_stats: object, iteration_stats: object, engine_index: object) -> bool:
        """One step (``owner`` is not read); never raises: what is missing, of another type, out of
        range or raises is absent. False where nothing was recorded (no stats, telemetry off)."""

def force_flush(timeout: float = 5.0) -> bool: ...
def shutdown(timeout: float = 5.0) -> bool: ...
def stats() -> dict[str, int]: ...
def latency_percentiles() -> list[LatencyPercentiles]: ...
def latency_summary() -> str: ...
def latency_summary_at_exit() -> bool: ...
def semconv_latest() -> bool: ...
def _after_fork_child() -> None: ...

class Operation:
    """One instrumented LLM call in progress (see ``src/offline/operation.rs``): its span context is reserved
    and its request spans' header built when it is made; ``end`` records its span (once)."""

    def __init__(
        self,
        name: str,
        provider_name: str,
        model: str | None,
        parent: ParentContext | None,
        records_requests: bool,
        core_reads: bool,
        start_ns: int,
    ) -> None: ...
    name: Final[str]
    model: Final[str | None]
    parent: Final[ParentContext | None]
    records_requests: Final[bool]
    core_reads: Final[bool]  # whether its requests register in the core (PendingRequests)
    start_ns: Final[int]
    context: Final[tuple[int, int, int]]  # (trace_id, span_id, trace_flags)
    request_count: int  # counted by the core's registration and by the shim
    engine_id: int
    runs_enqueued: bool
    conversations: list[Any] | None
    def as_parent(self) -> ParentContext: ...
    def end(self, end_ns: int, error_type: str | None = None) -> bool: ...

def current_operation() -> Operation | None:
    """The LLM call in progress on this thread (see ``src/offline/current_operation.rs``)."""

def set_current_operation(operation: Operation | None) -> None: ...

class PendingRequests:
    """The requests the core will read when they finish, registered by add_request's replacement."""

    def __init__(
        self,
        register_otherwise: Callable[..., None],
        now_ns: Callable[[], int],
        request_attributes: Callable[[Any, Any, Any], dict[str, Any]],
        sampling_fields: Sequence[str],
        lora_fields: Sequence[str],
    ) -> None: ...
    def register(
        self,
        engine: Any,
        request_id: Any,
        prompt: Any,
        params: Any,
        lora_request: Any,
        priority: Any,
        prompt_text: Any,
    ) -> None:
        """Keeps a request of this thread's current operation where the core reads its outputs; any
        other goes to ``register_otherwise``."""
    def release(self, operation: Operation, pending: dict[tuple[int, str], tuple[Any, ...]]) -> int:
        """Hands the operation's unfinished requests into ``pending``; returns its request count."""
    def deactivate(self) -> None: ...
    def __len__(self) -> int: ...

class OfflineCalls:
    """The begin and end of instrumented LLM calls and engine steps' reports, for calls whose
    outputs the core reads (see ``src/offline/calls.rs``). Never raises an ``Exception``: failures go
    to ``log_failure(what, exception)`` and the call goes on untraced."""

    def __init__(
        self,
        *,
        engine_attribute: str,
        model_name: Callable[[Any], str | None],
        current_context: Callable[[], Any],
        parent_of: Callable[[Any], ParentContext | None],
        provider_name: str,
        now_ns: Callable[[], int],
        requests: PendingRequests,
        reader: OutputReader,
        shim_pending: dict[tuple[int, str], tuple[Any, ...]],
        record_otherwise: Callable[[Any, list[Any], int], None],
        end_unfinished: Callable[[Operation, int, str | None], None],
        log_failure: Callable[[str, BaseException], None],
    ) -> None: ...
    def end(self, operation: Operation, error: BaseException | None = None) -> None:
        """Ends the operation ``OperationStart.begin`` made current: unfinished requests, then its span."""
    def record_step(self, engine: Any, outputs: Any) -> None:
        """Records the finished outputs of a step; the shim's go to ``record_otherwise``."""
    def deactivate(self) -> None: ...

class OperationStart:
    """The beginning of one LLM method's calls (its operation name; whether its requests are the user's)."""

    def __init__(self, calls: OfflineCalls, name: str, records_requests: bool) -> None: ...
    def begin(self, llm: Any, messages: Any = None) -> Operation | None:
        """Makes a new operation current on this thread and returns it; None where the call is not
        one (off, nested, failed)."""
