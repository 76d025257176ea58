"""Instrumentation of vLLM's serving path: ``AsyncLLM`` as ``vllm serve`` drives it.

- One span per engine request (a chat completion, a completion prompt, an embedding input), parented
  to the current span where the request is added (an ASGI/FastAPI server span when such an
  instrumentation runs), else to the incoming HTTP request's W3C trace context.
- Python runs per request (added, finished or aborted) and once per engine step (one call into the
  core with every request that finished in it), never per token: the output processor's per-step
  loop is left alone, the streaming generator is not wrapped.
- The core reads the finished requests' states itself (``_core.FinishedRequestReader``, by the names
  in ``_vllm.FINISHED_REQUEST_FIELDS``); the shim records those of an unusual shape (``_record``),
  and all of them with content capture, with the same rules.
- When vLLM's own tracing is on, the engine request carries our span as its trace context, so vLLM's
  ``llm_request`` span nests under ours.
- The engine gauges come from the stat loggers' per-step call (stats are on by default in serving).
- Request spans and engine gauges carry the API-server index (``vllm.api_server.index``, vLLM's
  ``--api-server-count`` processes), set once per engine; the gauges also carry the engine index.
- When the engine fails (its engine-core process died or raised: EngineDeadError), vLLM's output
  handler hands the error to every request in flight (``propagate_error``) and finishes none of
  them: the ``propagate_error`` replacement records each with the error's type and the tokens
  generated so far, and one ``vllm.engine.failures``.
- When the server shuts down (SIGTERM: ``AsyncLLM.shutdown``), the requests in flight are recorded
  as aborted with ``vllm.request.abort_reason`` "shutdown", however vLLM ends them (0.32's EngineCore
  aborts them; an engine core stopped under them fails them through ``propagate_error``, which is
  then no engine failure; any left when shutdown returns are aborted by it).
- A request vLLM 0.33+ fails in EngineCore (rejected on arrival, a grammar that did not compile)
  leaves the output processor without its stats update: the ``_finish_request`` replacement notes
  it as finished with reason "error" (only where vLLM has that path).

The patches are set on the ``AsyncLLM``'s own output processor and stat-logger manager (instance
attributes), so offline ``LLMEngine`` objects, which share those classes, pay nothing for them.
"""

from __future__ import annotations

import contextvars
import logging
import types
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NamedTuple

import wrapt
from opentelemetry import propagate, trace
from opentelemetry.instrumentation.vllm import _core, _vllm
from opentelemetry.instrumentation.vllm._content import ContentPolicy
from opentelemetry.instrumentation.vllm._context import current_parent
from opentelemetry.instrumentation.vllm._forwarding import (
    argument_dispatching_function,
    forwarding_function,
    pending_reporting_function,
    preceding_function,
    substituting_function,
)
from opentelemetry.instrumentation.vllm._patches import ClassPatches
from opentelemetry.instrumentation.vllm._records import request_record_with_parent

if TYPE_CHECKING:
    from opentelemetry.instrumentation.vllm._core import RequestRecordWithParent

_logger = logging.getLogger("opentelemetry.instrumentation.vllm")

SPAN_KIND_INTERNAL = 0
SPAN_KIND_SERVER = 1

# The incoming W3C trace headers of the request AsyncLLM.add_request is adding, for the output
# processor's add_request it calls (vLLM >= 0.32 drops them before that when its own tracing is off).
_incoming_trace_headers: contextvars.ContextVar[Any] = contextvars.ContextVar(
    "otel_vllm_incoming_trace_headers", default=None
)

# Instance attributes set on an AsyncLLM's output processor and stat-logger manager.
PROCESSOR_METHODS = tuple(hook.method for hook in _vllm.PROCESSOR_HOOKS)
LOGGER_MANAGER_METHODS = (_vllm.LOGGER_MANAGER_RECORD.method,)

# Every AsyncLLM instrumented in this process, weakly: the hook is its __init__, which has already
# run for a live engine, so an instrument() after uninstrument() (telemetry turned off and on again
# in a running server) finds it here.
_engines_seen: weakref.WeakSet[Any] = weakref.WeakSet()


class ServingRequest(NamedTuple):
    """What was known when an engine request was added, kept until it finishes. A tuple: the core's
    FinishedRequestReader reads it by position (src/readers/finished_requests.rs)."""

    external_id: str
    operation_name: str
    parent: tuple[int, int, int, bool] | None
    trace_id: int | None
    span_id: int | None
    kind: int
    start_ns: int
    attributes: dict[str, Any]


# The EngineCoreRequest's trace headers, read per request (a module global: no attribute lookup on _vllm).
_TRACE_HEADERS = _vllm.ENGINE_REQUEST_TRACE_HEADERS

# ServingRequest(...) runs the namedtuple's __new__, a Python function; tuple.__new__ with the class
# makes the same object in C (about 0.12 µs less per request, which a server adds for every request).
_new_tuple = tuple.__new__


def incoming_parent(request: Any) -> tuple[int, int, int, bool] | None:
    """The current span (a server span of an ASGI instrumentation, or the application's), else the
    trace context the HTTP request came with."""
    parent = current_parent()
    if parent is not None:
        return parent
    headers = _incoming_trace_headers.get() or getattr(request, _TRACE_HEADERS, None)
    if not headers:
        return None
    context = trace.get_current_span(propagate.extract(headers)).get_span_context()
    if not context.is_valid:
        return None
    return (context.trace_id, context.span_id, int(context.trace_flags), context.is_remote)


async def _awaited_with_incoming_headers(headers: Any, adding: Any) -> Any:
    token = _incoming_trace_headers.set(headers)
    try:
        return await adding
    finally:
        _incoming_trace_headers.reset(token)


async def _ready(value: Any) -> Any:
    return value


def _incoming_trace_headers_ready(serving: Any, headers: Any) -> Any:
    """The substitute of the handlers' ``_get_trace_headers(headers)`` (``serving``, not read): vLLM
    forwards the incoming trace context only when its own tracing is on (and warns otherwise); ours
    needs it either way. An awaitable of the W3C trace headers vLLM would forward, or None where the
    request has none (vLLM's own method then runs). Never raises."""
    try:
        found = _vllm.trace_headers_of(headers)
    except Exception:  # noqa: BLE001
        return None
    return _ready(found) if found else None


def traceparent(trace_id: int, span_id: int, flags: int) -> str:
    return f"00-{trace_id:032x}-{span_id:016x}-{flags & 0xFF:02x}"


class EngineRequests:
    """The requests of one AsyncLLM: registered when added, recorded when finished or aborted.

    Per request, ``request_id`` is read as a plain attribute of the EngineCoreRequest and the
    RequestState (named in ``_vllm.ATTRIBUTES_READ``): a name looked up in _vllm would cost more."""

    def __init__(
        self, processor: Any, model: str | None, content: ContentPolicy, attributes: dict[str, int] | None = None
    ) -> None:
        self.processor = processor
        self.model = model
        self.content = content
        # Span attributes of every request of this engine (which API-server process): in the batch
        # header, so nothing is added per request.
        self.attributes = attributes
        # Set when AsyncLLM builds its output processor (--otlp-traces-endpoint), fixed afterwards.
        self.native_tracing = _vllm.native_tracing_enabled(processor)
        self.pending: dict[str, ServingRequest] = {}
        # Set when the engine's shutdown begins: what fails its requests from then on is the shutdown.
        self.shutting_down = False
        self.prompts: dict[str, Any] = {}
        # Requests finished during the current process_outputs call: (pending, req_state, reason, end_wall).
        self.finished: list[tuple[ServingRequest, Any, str, float | None]] = []
        # The core reads and records them, except with content capture (that needs Python); any it
        # cannot read cleanly come back, for _record.
        self.reader = (
            None
            if content.capture
            else _core.FinishedRequestReader(
                _vllm.PROVIDER_NAME, model, **_vllm.FINISHED_REQUEST_FIELDS, attributes=attributes
            )
        )

    def added(self, owner: Any, request: Any, prompt: Any) -> None:
        """The output processor (``owner``, not read) is about to take ``request``. Never raises."""
        try:
            external_id, operation, arrival_ns, attributes = _vllm.engine_request_fields(request)
            _vllm.add_serving_request_attributes(attributes, request)
            parent = incoming_parent(request)
            # The process's entry span when nothing local encloses it.
            kind = SPAN_KIND_SERVER if parent is None or parent[3] else SPAN_KIND_INTERNAL
            trace_id = span_id = None  # the core assigns them when it records the span
            if self.native_tracing:
                # vLLM's llm_request span needs our span's context now, before ours is recorded.
                trace_id, span_id, flags = _core.new_span_context(parent, operation, self.model, kind)
                headers = {"traceparent": traceparent(trace_id, span_id, flags)}
                incoming = getattr(request, _TRACE_HEADERS, None) or {}
                if "tracestate" in incoming:
                    headers["tracestate"] = incoming["tracestate"]
                setattr(request, _TRACE_HEADERS, headers)
            self.pending[request.request_id] = _new_tuple(
                ServingRequest,
                (
                    external_id,
                    operation,
                    parent,
                    trace_id,
                    span_id,
                    kind,
                    arrival_ns or _vllm.now_ns(),
                    attributes,
                ),
            )
            if self.content.capture:
                self.prompts[request.request_id] = prompt
        except Exception:  # noqa: BLE001
            _logger.debug("could not register a request", exc_info=True)

    def finished_now(self, owner: Any, req_state: Any, finish_reason: Any, iteration_stats: Any) -> None:
        """vLLM's output processor (``owner``, not read) finished ``req_state``. Never raises."""
        try:
            pending = self.pending.pop(req_state.request_id, None)
            if pending is not None:
                _vllm.add_parent_choice_count(pending.attributes, req_state)
                end_wall = _vllm.iteration_end_wall(iteration_stats)
                self.finished.append((pending, req_state, _vllm.finish_reason_name(finish_reason), end_wall))
        except Exception:  # noqa: BLE001
            _logger.debug("could not read a finished request", exc_info=True)

    def left(self, owner: Any, req_state: Any) -> None:
        """vLLM's output processor (``owner``, not read) dropped ``req_state`` (``_finish_request``,
        vLLM 0.33+). Where vLLM failed the request in EngineCore, no ``_update_stats_from_finished``
        follows: it is noted here as finished with reason "error", and recorded with the step's
        other finished requests (its end: when the step's are recorded, right after this
        process_outputs call; vLLM keeps no end time of its own for it). Never raises."""
        try:
            if _vllm.failed_in_engine(req_state):
                pending = self.pending.pop(req_state.request_id, None)
                if pending is not None:
                    _vllm.add_parent_choice_count(pending.attributes, req_state)
                    self.finished.append((pending, req_state, _vllm.ENGINE_FAILURE_FINISH_REASON, None))
        except Exception:  # noqa: BLE001
            _logger.debug("could not read a failed request", exc_info=True)

    def engine_failed(self, owner: Any, error: Any) -> None:
        """vLLM's output processor (``owner``, not read) handed ``error`` to every request in flight:
        the engine failed and will finish none of them. Each is recorded now, ended with the error
        (finish reason "error", ``error.type`` the error's class, what its state says so far), after
        the step's requests that finished before the failure; then the failure itself. Never raises."""
        try:
            if self.finished:
                self.report_finished()
            if self.shutting_down:  # the shutdown stopped the engine: its requests were aborted
                self.record_shut_down()
                return
            error_type = _vllm.failure_type(error)
            states = getattr(self.processor, _vllm.OUTPUT_PROCESSOR_REQUEST_STATES, None) or {}
            end_ns = _vllm.now_ns()
            records = []
            for rid in list(self.pending):
                pending = self.pending.pop(rid, None)
                if pending is not None:
                    reason = _vllm.ENGINE_FAILURE_FINISH_REASON
                    records.append(self._record(pending, states.get(rid), reason, None, end_ns, rid, error_type))
            self._send(records)
            _core.record_engine_failure(
                _vllm.PROVIDER_NAME, self.model, _vllm.FAILED_ENGINE_INDEX, error_type, attributes=self.attributes
            )
        except Exception:  # noqa: BLE001
            _logger.debug("could not record the requests of a failed engine", exc_info=True)

    def record_shut_down(self) -> None:
        """The engine shut down: its requests still in flight are recorded as aborted (finish reason
        "abort"), with ``vllm.request.abort_reason`` "shutdown" and what their states say so far.
        Never raises."""
        try:
            states = getattr(self.processor, _vllm.OUTPUT_PROCESSOR_REQUEST_STATES, None) or {}
            end_ns = _vllm.now_ns()
            records = []
            reason = _vllm.SHUTDOWN_ABORT_REASON
            for rid in list(self.pending):
                pending = self.pending.pop(rid, None)
                if pending is not None:
                    state = states.get(rid)
                    records.append(self._record(pending, state, "abort", None, end_ns, rid, abort_reason=reason))
            self._send(records)
        except Exception:  # noqa: BLE001
            _logger.debug("could not record the requests of a shut-down engine", exc_info=True)

    def record_finished(self) -> None:
        """Once per engine step, after vLLM's own processing (and its llm_request spans)."""
        # The same list object stays: the generated process_outputs replacement holds it.
        finished: list[Any] = self.finished.copy()
        self.finished.clear()
        end_ns = _vllm.now_ns()
        if self.shutting_down:
            # vLLM 0.32's shutdown aborts the requests in flight in EngineCore, which reports them
            # finished with reason "abort": the shutdown's doing, said on the span (the shim's path).
            records = []
            for p, state, reason, end_wall in finished:
                abort_reason = _vllm.SHUTDOWN_ABORT_REASON if reason == "abort" else None
                records.append(self._record(p, state, reason, end_wall, end_ns, abort_reason=abort_reason))
            self._send(records)
            return
        if self.reader is not None:
            left = self.reader.record(finished, end_ns)
            if not left:
                return
            finished = left
        self._send([self._record(p, state, reason, end_wall, end_ns) for p, state, reason, end_wall in finished])

    def report_finished(self) -> None:
        """``record_finished`` for the process_outputs replacement: logs instead of raising."""
        try:
            self.record_finished()
        except Exception:  # noqa: BLE001
            _logger.debug("could not record finished requests", exc_info=True)

    def record_aborted(self, states_before: dict[str, Any]) -> None:
        """After abort_requests: our requests whose state vLLM dropped without finishing them,
        recorded with what their state said (tokens and latencies so far)."""
        states = getattr(self.processor, _vllm.OUTPUT_PROCESSOR_REQUEST_STATES)
        gone = [rid for rid in self.pending.copy() if rid not in states]
        if not gone:
            return
        end_ns = _vllm.now_ns()
        records = []
        # Aborted while the engine shuts down (the server's handlers cancelled): the shutdown's doing.
        reason = _vllm.SHUTDOWN_ABORT_REASON if self.shutting_down else None
        for rid in gone:
            pending = self.pending.pop(rid, None)
            if pending is not None:
                state = states_before.get(rid)
                records.append(self._record(pending, state, "abort", None, end_ns, rid, abort_reason=reason))
        self._send(records)

    def _record(
        self,
        pending: ServingRequest,
        req_state: Any,
        reason: str,
        end_wall: float | None,
        end_ns: int,
        request_id: str | None = None,
        error_type: str | None = None,
        abort_reason: str | None = None,
    ) -> tuple[int, str, RequestRecordWithParent]:
        stats = _vllm.request_state_stats(req_state)
        start_ns, ttft, tpot, queue, prefill, decode, inference, e2e, preemptions = _vllm.timings(
            stats, end_wall if end_wall is not None else end_ns / 1e9
        )
        input_tokens, output_tokens, cached = (
            _vllm.request_state_token_counts(req_state) if req_state is not None else (None, None, None)
        )
        attributes = pending.attributes
        if preemptions or self.content.capture or abort_reason:
            attributes = dict(attributes)
            if abort_reason:
                attributes[_vllm.ABORT_REASON_ATTRIBUTE] = abort_reason
            if preemptions:
                attributes["vllm.request.num_preemptions"] = preemptions
            if self.content.capture:
                rid = request_id if request_id is not None else req_state.request_id
                attributes["gen_ai.input.messages"] = self.content.input_messages(self.prompts.pop(rid, None), None)
                text = _vllm.request_state_output_text(req_state) if req_state is not None else None
                attributes["gen_ai.output.messages"] = self.content.output_text_messages(text, reason)
        return (
            pending.kind,
            pending.operation_name,
            request_record_with_parent(
                pending.external_id,
                pending.span_id,
                start_ns if start_ns is not None else pending.start_ns,
                end_ns,
                input_tokens,
                output_tokens,
                cached,
                [reason],
                error_type or _vllm.error_type_of_finish(reason),
                ttft,
                tpot,
                queue,
                prefill,
                decode,
                inference,
                e2e,
                attributes,
                pending.parent,
                pending.trace_id,
            ),
        )

    def _send(self, records: list[tuple[int, str, RequestRecordWithParent]]) -> None:
        if not records:
            return
        groups: dict[tuple[int, str], list[RequestRecordWithParent]] = {}
        for kind, operation, record in records:
            groups.setdefault((kind, operation), []).append(record)
        for (kind, operation), group in groups.items():
            header = (operation, _vllm.PROVIDER_NAME, self.model, self.model, None, kind, self.attributes)
            _core.record_requests(header, group)


def bound_replacement(method: Any, generate: Any, generic: Any) -> Any:
    """The replacement of ``method``, a bound method of vLLM's (set as an instance attribute): where it
    is a plain function's, ``generate(function)`` (a function generated with its own parameters, see
    _forwarding.py) bound to the same object; else, or where that cannot be generated, ``generic``.
    In a running server, a generic ``*args, **kwargs`` wrapper's packing of the arguments costs more
    per call than what the instrumentation then does."""
    function = getattr(method, "__func__", None)
    owner = getattr(method, "__self__", None)
    if isinstance(method, types.MethodType) and owner is not None:
        generated = generate(function)
        if generated is not None:
            return types.MethodType(generated, owner)
    return generic


def finished_recording(process_outputs: Any, requests: EngineRequests) -> Any:
    """The replacement of an output processor's bound ``process_outputs`` that records the requests
    that finished during the call (``requests.finished``, filled by the ``_update_stats_from_finished``
    replacement, and by the ``_finish_request`` one for requests vLLM failed), once per engine step."""

    def process_outputs_wrapper(*args: Any, **kwargs: Any) -> Any:
        result = process_outputs(*args, **kwargs)
        if requests.finished:
            requests.report_finished()
        return result

    return bound_replacement(
        process_outputs,
        lambda function: pending_reporting_function(function, requests.finished, requests.report_finished),
        process_outputs_wrapper,
    )


def request_registration(add_request: Any, requests: EngineRequests) -> Any:
    """The replacement of an output processor's bound ``add_request`` that registers each request
    (``requests.added``) before vLLM takes it."""
    processor = getattr(add_request, "__self__", None)

    def add_request_wrapper(request: Any, prompt: Any, *args: Any, **kwargs: Any) -> Any:
        requests.added(processor, request, prompt)
        return add_request(request, prompt, *args, **kwargs)

    return bound_replacement(
        add_request,
        lambda function: preceding_function(function, requests.added, _vllm.PROCESSOR_ADD_REQUEST.parameters),
        add_request_wrapper,
    )


def finish_registration(update_stats_from_finished: Any, requests: EngineRequests) -> Any:
    """The replacement of an output processor's bound ``_update_stats_from_finished`` (called once
    per finished request) that also tells ``requests.finished_now``."""
    processor = getattr(update_stats_from_finished, "__self__", None)
    _, _, iteration_name = _vllm.PROCESSOR_UPDATE_STATS_FROM_FINISHED.parameters

    def update_stats_from_finished_wrapper(req_state: Any, finish_reason: Any, *args: Any, **kwargs: Any) -> Any:
        iteration_stats = args[0] if args else kwargs.get(iteration_name)
        result = update_stats_from_finished(req_state, finish_reason, *args, **kwargs)
        requests.finished_now(processor, req_state, finish_reason, iteration_stats)
        return result

    return bound_replacement(
        update_stats_from_finished,
        lambda function: forwarding_function(
            function, requests.finished_now, _vllm.PROCESSOR_UPDATE_STATS_FROM_FINISHED.parameters
        ),
        update_stats_from_finished_wrapper,
    )


def leave_registration(finish_request: Any, requests: EngineRequests) -> Any:
    """The replacement of an output processor's bound ``_finish_request`` (called once per request
    that leaves it) that also tells ``requests.left``."""
    processor = getattr(finish_request, "__self__", None)

    def finish_request_wrapper(req_state: Any, *args: Any, **kwargs: Any) -> Any:
        result = finish_request(req_state, *args, **kwargs)
        requests.left(processor, req_state)
        return result

    return bound_replacement(
        finish_request,
        lambda function: forwarding_function(function, requests.left, _vllm.PROCESSOR_FINISH_REQUEST.parameters),
        finish_request_wrapper,
    )


def failure_recording(propagate_error: Any, requests: EngineRequests) -> Any:
    """The replacement of an output processor's bound ``propagate_error(e)`` (called once, when the
    engine failed) that also tells ``requests.engine_failed``, whatever vLLM's own call did. Runs
    once per engine, so a plain wrapper: nothing to gain from a generated function here."""
    processor = getattr(propagate_error, "__self__", None)
    (error_name,) = _vllm.PROCESSOR_PROPAGATE_ERROR.parameters

    def propagate_error_wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return propagate_error(*args, **kwargs)
        finally:
            requests.engine_failed(processor, args[0] if args else kwargs.get(error_name))

    return propagate_error_wrapper


def engine_state_recording(record: Any, report: Any) -> Any:
    """The replacement of a StatLoggerManager's bound ``record`` that also calls
    ``report(manager, scheduler_stats, iteration_stats, engine_idx)`` (``EngineStateRecorder.record``,
    which never raises) once per engine step."""
    manager = getattr(record, "__self__", None)
    scheduler_name, iteration_name, index_name = _vllm.LOGGER_MANAGER_RECORD.parameters

    def record_wrapper(*args: Any, **kwargs: Any) -> Any:
        result = record(*args, **kwargs)
        scheduler_stats = kwargs.get(scheduler_name, args[0] if args else None)
        iteration_stats = kwargs.get(iteration_name, args[1] if len(args) > 1 else None)
        report(manager, scheduler_stats, iteration_stats, kwargs.get(index_name, args[3] if len(args) > 3 else None))
        return result

    return bound_replacement(
        record,
        lambda function: forwarding_function(function, report, _vllm.LOGGER_MANAGER_RECORD.parameters),
        record_wrapper,
    )


class ServingInstrumentation:
    def __init__(self, content: ContentPolicy) -> None:
        self.content = content
        self.active = False
        self._patches = ClassPatches()
        # Objects that carry our instance-attribute patches, to remove them on uninstrument.
        self._instances: weakref.WeakKeyDictionary[Any, tuple[str, ...]] = weakref.WeakKeyDictionary()
        # Each instrumented AsyncLLM's requests, for its shutdown.
        self._engine_requests: weakref.WeakKeyDictionary[Any, EngineRequests] = weakref.WeakKeyDictionary()

    def instrument(self) -> None:
        self.active = True
        wrapt.register_post_import_hook(self._patch_async_llm_module, _vllm.ASYNC_LLM_MODULE)
        for hook in _vllm.GET_TRACE_HEADERS:
            for module in hook.modules:
                wrapt.register_post_import_hook(self._patch_serving_module, module)
        for engine in list(_engines_seen):
            try:
                self._instrument_engine(engine)
            except Exception:  # noqa: BLE001
                _logger.warning("could not instrument an AsyncLLM again", exc_info=True)

    def uninstrument(self) -> None:
        self.active = False
        self._patches.remove_all()
        for instance, names in list(self._instances.items()):
            for name in names:
                vars(instance).pop(name, None)
        self._instances.clear()
        self._engine_requests.clear()

    def _patch_async_llm_module(self, module: Any) -> None:
        if not self.active:
            return
        try:
            async_llm = getattr(module, _vllm.ASYNC_LLM_CLASS)
            init, add_request = _vllm.ASYNC_LLM_INIT.method, _vllm.ASYNC_LLM_ADD_REQUEST.method
            self._patches.wrap(_vllm.defining_class(async_llm, init), init, self._async_llm_init)
            shutdown = _vllm.ASYNC_LLM_SHUTDOWN.method
            shutdown_owner = _vllm.defining_class(async_llm, shutdown)
            if shutdown_owner is not None:
                self._patches.wrap(shutdown_owner, shutdown, self._async_llm_shutdown)
            # Called per request: a generated function that hands back vLLM's own coroutine unless
            # the request came with trace headers (see _forwarding.py), else the generic wrapper.
            (trace_headers,) = _vllm.ASYNC_LLM_ADD_REQUEST.parameters
            self._patches.replace_or_wrap(
                _vllm.defining_class(async_llm, add_request),
                add_request,
                lambda original: argument_dispatching_function(
                    original, trace_headers, self._add_request_with_trace_headers
                ),
                self._async_llm_add_request,
            )
        except Exception:  # noqa: BLE001
            _logger.warning("could not instrument vLLM's AsyncLLM", exc_info=True)

    def _patch_serving_module(self, module: Any) -> None:
        if not self.active:
            return
        try:
            hook = next(h for h in _vllm.GET_TRACE_HEADERS if module.__name__ in h.modules)
            serving = getattr(module, hook.owner, None)
            if serving is not None and hasattr(serving, hook.method):
                # Called per HTTP request: as add_request above.
                self._patches.replace_or_wrap(
                    _vllm.defining_class(serving, hook.method),
                    hook.method,
                    lambda get_trace_headers: substituting_function(
                        get_trace_headers, _incoming_trace_headers_ready, hook.parameters
                    ),
                    self._get_trace_headers,
                )
        except Exception:  # noqa: BLE001
            _logger.warning("could not instrument vLLM's OpenAI server", exc_info=True)

    # ---- wrappers ---------------------------------------------------------------------------

    # The generic wrappers, where vLLM's methods cannot be replaced by generated functions.

    async def _get_trace_headers(
        self, wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        (headers,) = _vllm.GET_TRACE_HEADERS[0].parameters
        ready = _incoming_trace_headers_ready(instance, kwargs.get(headers, args[0] if args else None))
        if ready is not None:
            return await ready
        return await wrapped(*args, **kwargs)

    async def _async_llm_add_request(
        self, wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        headers = kwargs.get(_vllm.ADD_REQUEST_TRACE_HEADERS)
        if not headers:
            return await wrapped(*args, **kwargs)

        def add_request(forwarded: Any) -> Any:
            return wrapped(*args, **{**kwargs, _vllm.ADD_REQUEST_TRACE_HEADERS: forwarded})

        return await self._add_request_with_trace_headers(instance, headers, add_request)

    def _add_request_with_trace_headers(self, engine: Any, headers: Any, add_request: Any) -> Any:
        """AsyncLLM.add_request for a request that came with trace headers: they are ours to read
        (``EngineRequests.added`` finds them in ``_incoming_trace_headers``); vLLM gets them only with
        its own tracing on (else it would only warn that its tracing is off and drop them).
        ``add_request(trace_headers)`` makes vLLM's coroutine; what is returned awaits it."""
        native = _vllm.native_tracing_enabled(_vllm.async_llm_output_processor(engine))
        return _awaited_with_incoming_headers(headers, add_request(headers if native else None))

    def _async_llm_init(
        self, wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> None:
        wrapped(*args, **kwargs)
        if not self.active:
            return
        try:
            self._instrument_engine(instance)
            _engines_seen.add(instance)
        except Exception:  # noqa: BLE001
            _logger.warning("could not instrument an AsyncLLM", exc_info=True)

    def _async_llm_shutdown(
        self, wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        """AsyncLLM.shutdown (SIGTERM, SIGINT, or the engine collected): what fails its requests from
        now on is the shutdown; those still in flight when it returns are aborted by it."""
        requests = None
        try:
            requests = self._engine_requests.get(instance)
            if requests is not None:
                requests.shutting_down = True
        except Exception:  # noqa: BLE001
            _logger.debug("could not note an engine's shutdown", exc_info=True)
        try:
            return wrapped(*args, **kwargs)
        finally:
            if requests is not None and requests.pending:
                requests.record_shut_down()

    def _instrument_engine(self, engine: Any) -> None:
        processor = _vllm.async_llm_output_processor(engine)
        if processor is None or processor in self._instances:
            return
        model = _vllm.model_name(engine)
        api_server = _vllm.async_llm_api_server_index(engine)
        attributes = None if api_server is None else {_vllm.API_SERVER_INDEX_ATTRIBUTE: api_server}
        requests = EngineRequests(processor, model, self.content, attributes)
        self._engine_requests[engine] = requests
        add_request = getattr(processor, _vllm.PROCESSOR_ADD_REQUEST.method)
        process_outputs = getattr(processor, _vllm.PROCESSOR_PROCESS_OUTPUTS.method)
        update_stats_from_finished = getattr(processor, _vllm.PROCESSOR_UPDATE_STATS_FROM_FINISHED.method)
        abort_requests = getattr(processor, _vllm.PROCESSOR_ABORT_REQUESTS.method)
        request_states = _vllm.OUTPUT_PROCESSOR_REQUEST_STATES

        def abort_requests_wrapper(*args: Any, **kwargs: Any) -> Any:
            # Aborts are rare (client disconnects): a copy of the states keeps what the aborted had.
            states_before = getattr(processor, request_states).copy() if requests.pending else None
            result = abort_requests(*args, **kwargs)
            if states_before is not None:
                try:
                    requests.record_aborted(states_before)
                except Exception:  # noqa: BLE001
                    _logger.debug("could not record aborted requests", exc_info=True)
            return result

        setattr(processor, _vllm.PROCESSOR_ADD_REQUEST.method, request_registration(add_request, requests))
        setattr(processor, _vllm.PROCESSOR_PROCESS_OUTPUTS.method, finished_recording(process_outputs, requests))
        setattr(
            processor,
            _vllm.PROCESSOR_UPDATE_STATS_FROM_FINISHED.method,
            finish_registration(update_stats_from_finished, requests),
        )
        setattr(processor, _vllm.PROCESSOR_ABORT_REQUESTS.method, abort_requests_wrapper)
        propagate_error = getattr(processor, _vllm.PROCESSOR_PROPAGATE_ERROR.method)
        setattr(processor, _vllm.PROCESSOR_PROPAGATE_ERROR.method, failure_recording(propagate_error, requests))
        patched = PROCESSOR_METHODS
        finish_request_name = _vllm.PROCESSOR_FINISH_REQUEST.method
        finish_request = getattr(processor, finish_request_name, None)
        if finish_request is not None and _vllm.fails_requests_without_stats_update():
            setattr(processor, finish_request_name, leave_registration(finish_request, requests))
            patched += (finish_request_name,)
        self._instances[processor] = patched

        manager = _vllm.async_llm_logger_manager(engine)
        if manager is not None and manager not in self._instances:
            recorder = _core.EngineStateRecorder(
                _vllm.PROVIDER_NAME, model, **_vllm.ENGINE_STATE_ATTRIBUTES, attributes=attributes
            )
            record = _vllm.LOGGER_MANAGER_RECORD.method
            setattr(manager, record, engine_state_recording(getattr(manager, record), recorder.record))
            self._instances[manager] = LOGGER_MANAGER_METHODS
