"""Instrumentation of vLLM's offline API: ``vllm.LLM`` and the ``LLMEngine`` under it.

- Each LLM call (generate, chat, encode, embed, classify, score, beam_search, wait_for_completion)
  is one operation span: a ``_core.Operation``, current on its thread while the call runs
  (``_core.current_operation``; see src/offline/current_operation.rs for why not a context variable).
  A call made inside another (chat -> generate in older vLLM, embed -> encode) is not a second one.
- ``LLMEngine.add_request`` remembers, per request id, the operation and the request parameters;
  ``LLMEngine.step`` hands the requests that finished in that step to the core, once per step.
  Python touches each request twice (add, finish), never per token. For a call whose outputs the
  core reads (no content to capture), the core also keeps the request (``_core.PendingRequests``):
  add_request's replacement calls it directly, and the shim's own dict holds only the others.
- Where the core reads outputs, ``_core.OfflineCalls`` does what ``begin``, ``_end_operation`` and
  ``_record_step`` do here, called directly by the generated replacements (see src/offline/calls.rs);
  the Python versions serve content capture and ``wait_for_completion``.
- Where ``LLMEngine.step`` raises (the engine failed: EngineDeadError when its engine-core process
  died), the engine failure is recorded (``vllm.engine.failures``) and the engine's request states
  are kept: the requests' spans, ended with the LLM call that raised, carry the tokens and timings
  vLLM had for them (``_end_unfinished_requests``).
- ``LLM.__init__`` turns vLLM's per-request stats on unless the user turned them off, because
  TTFT, TPOT, queue, prefill and decode come only from them.

Nothing raised here reaches the application: wrappers log and carry on; vLLM's own exceptions
pass through unchanged.
"""

from __future__ import annotations

import contextvars
import logging
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import wrapt
from opentelemetry.instrumentation.vllm import _core, _vllm
from opentelemetry.instrumentation.vllm._content import ContentPolicy
from opentelemetry.instrumentation.vllm._context import current_context_getter, current_parent, parent_of
from opentelemetry.instrumentation.vllm._forwarding import (
    forwarding_function,
    result_reporting_function,
    surrounding_function,
)
from opentelemetry.instrumentation.vllm._patches import ClassPatches
from opentelemetry.instrumentation.vllm._records import request_record

if TYPE_CHECKING:
    from opentelemetry.instrumentation.vllm._core import RequestRecord

_logger = logging.getLogger("opentelemetry.instrumentation.vllm")

SPAN_KIND_INTERNAL = 0

# One instrumented LLM call in progress: the core's object (see src/offline/operation.rs), which holds its
# span context, start time and request count, and records its span when it ends.
Operation = _core.Operation


# What add_request knew about a request the shim records itself, kept until it finishes (the core
# hands its own entries over in this layout too, see _core.PendingRequests):
#   (add_request's time in ns; request attributes; operation or None (enqueued); operation name;
#    prompt; conversation)
PendingRequest = tuple[Any, ...]
ADDED_NS, ATTRIBUTES, OPERATION, OPERATION_NAME = 0, 1, 2, 3  # positions read outside unpacking


_enqueue_operation: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "otel_vllm_enqueue_operation", default=None
)


class OfflineInstrumentation:
    def __init__(self, content: ContentPolicy) -> None:
        self.content = content
        self.active = False
        self._patches = ClassPatches()
        self._pending: dict[tuple[int, str], PendingRequest] = {}
        self._warned_stats_off = False
        # (params, lora_request, priority, attributes, operation) of the last request added here: a
        # batch usually shares one SamplingParams object, so its attributes are read once, not per
        # request; read again in each call (parameters may have been changed between calls).
        self._last_attributes: tuple[Any, Any, Any, dict[str, Any], Operation | None] | None = None
        # The core reads finished outputs itself unless content is captured (that needs Python).
        self._reader = None if content.capture else _core.OutputReader(**_vllm.FINISHED_OUTPUT_FIELDS)
        # The requests the core reads and the core's begin/end/step reports, made when vLLM is
        # patched (with the clock of then: tests replace it first); None where the shim reads.
        self._requests: _core.PendingRequests | None = None
        self._calls: _core.OfflineCalls | None = None
        # id(engine) -> (a weak reference to it, its request states by the id given to add_request)
        # when its step raised, for the spans of its unfinished requests; taken when the call that ran
        # them ends. The reference tells a later engine at the same address from the one that failed.
        self._failed_engines: dict[int, tuple[Any, dict[str, Any]]] = {}

    # ---- patching ---------------------------------------------------------------------------

    def instrument(self) -> None:
        self.active = True
        # Post-import hooks: importing vLLM takes seconds, so nothing is imported here; the patch
        # applies when the application imports vLLM (at once if it already has).
        wrapt.register_post_import_hook(self._patch_llm_module, _vllm.LLM_MODULE)
        for module in _vllm.ENGINE_MODULES:
            wrapt.register_post_import_hook(self._patch_engine_module, module)

    def uninstrument(self) -> None:
        self.active = False
        self._patches.remove_all()
        self._pending.clear()
        self._failed_engines.clear()
        if self._requests is not None:
            self._requests.deactivate()
        if self._calls is not None:
            self._calls.deactivate()
        self._requests = self._calls = None

    def _make_core_objects(self) -> None:
        if self._reader is None or self._requests is not None:
            return
        self._requests = _core.PendingRequests(
            self._register_request,
            _vllm.now_ns,
            _vllm.request_attributes,
            _vllm.SAMPLING_FIELDS,
            _vllm.LORA_NAME_FIELDS,
        )
        self._calls = _core.OfflineCalls(
            engine_attribute=_vllm.LLM_ENGINE_ATTRIBUTE,
            model_name=_vllm.model_name,
            current_context=current_context_getter(),
            parent_of=parent_of,
            provider_name=_vllm.PROVIDER_NAME,
            now_ns=_vllm.now_ns,
            requests=self._requests,
            reader=self._reader,
            shim_pending=self._pending,
            record_otherwise=self._record_left_outputs,
            end_unfinished=self._end_unfinished_requests,
            log_failure=_log_failure,
        )

    def _patch_llm_module(self, module: Any) -> None:
        if not self.active:
            return
        try:
            self._make_core_objects()
            llm = getattr(module, _vllm.LLM_CLASS)
            init = _vllm.LLM_INIT.method
            self._patches.wrap(_vllm.defining_class(llm, init), init, self._llm_init)
            for hook in _vllm.LLM_OPERATIONS:
                if hasattr(llm, hook.method):
                    owner = _vllm.defining_class(llm, hook.method)
                    self._patches.replace(owner, hook.method, self._operation_replacement(hook))
            for hook in _vllm.LLM_ENQUEUES:
                if hasattr(llm, hook.method):
                    owner = _vllm.defining_class(llm, hook.method)
                    self._patches.wrap(owner, hook.method, self._enqueue_wrapper(hook.method))
        except Exception:  # noqa: BLE001 - an unknown vLLM shape must not break the application
            _logger.warning("could not instrument %s; vLLM's offline API is not traced", module.__name__, exc_info=True)

    def _patch_engine_module(self, module: Any) -> None:
        if not self.active:
            return
        try:
            engine = getattr(module, _vllm.ENGINE_CLASS, None)
            if engine is None:
                return
            add_request = _vllm.defining_class(engine, _vllm.ENGINE_ADD_REQUEST.method)
            step = _vllm.defining_class(engine, _vllm.ENGINE_STEP.method)
            if add_request is None or step is None:
                return
            # Plain functions rather than wrapt wrappers: add_request runs for every request and step
            # for every engine step, where wrapt's call costs more than the registration itself
            # (docs/design/generated-forwarding.md).
            self._patches.replace(add_request, _vllm.ENGINE_ADD_REQUEST.method, self._add_request_replacement)
            self._patches.replace(step, _vllm.ENGINE_STEP.method, self._step_replacement)
        except Exception:  # noqa: BLE001
            _logger.warning("could not instrument %s", module.__name__, exc_info=True)

    # ---- wrappers ---------------------------------------------------------------------------

    def _llm_init(
        self, wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        if self.active:
            if _vllm.DISABLE_LOG_STATS not in kwargs:
                kwargs[_vllm.DISABLE_LOG_STATS] = False
            elif kwargs[_vllm.DISABLE_LOG_STATS] and not self._warned_stats_off:
                self._warned_stats_off = True
                _logger.warning(
                    "LLM(disable_log_stats=True): vLLM keeps no per-request stats, so time to first token, "
                    "time per output token, queue, prefill and decode times are not recorded"
                )
        return wrapped(*args, **kwargs)

    def _operation_replacement(self, hook: _vllm.HookPoint) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        """The replacement of an LLM method that is an operation (see ``_operation_beginning``): a function
        with the method's own parameters where it has plain ones (wrapt's wrapper costs as much as
        starting the operation: docs/design/generated-forwarding.md), else a generic one. Where the
        core reads outputs, the core begins and ends the operation, except wait_for_completion's (the
        shim's pending requests name and count it)."""
        method = hook.method
        operation_name = _vllm.OPERATION_OF_METHOD[method]
        begin: Callable[[Any, Any], Operation | None]
        end: Callable[[Operation, BaseException | None], None]
        if self._calls is not None and operation_name is not None:
            records_requests = method not in _vllm.OPERATIONS_WITHOUT_REQUEST_SPANS
            begin = _core.OperationStart(self._calls, operation_name, records_requests).begin
            end = self._calls.end
        else:
            begin = self._operation_beginning(method)
            end = self._end_operation
        (messages,) = hook.parameters

        def make(original: Callable[..., Any]) -> Callable[..., Any]:
            surrounding = surrounding_function(original, begin, end, hook.parameters)
            if surrounding is not None:
                return surrounding

            def instrumented(llm: Any, *args: Any, **kwargs: Any) -> Any:
                begun = begin(llm, kwargs.get(messages, args[0] if args else None))
                if begun is None:
                    return original(llm, *args, **kwargs)
                try:
                    result = original(llm, *args, **kwargs)
                except BaseException as error:
                    end(begun, error)
                    raise
                end(begun, None)
                return result

            return instrumented

        return make

    def _operation_beginning(self, method: str) -> Callable[[Any, Any], Operation | None]:
        """``begin(llm, messages)`` for an LLM method: makes its operation current and returns it, or
        None where the call is not an operation (instrumentation off, or a call made inside another
        one, as chat -> generate in older vLLM). Never raises."""
        operation_name = _vllm.OPERATION_OF_METHOD[method]
        records_requests = method not in _vllm.OPERATIONS_WITHOUT_REQUEST_SPANS
        captures_conversations = method == _vllm.CONVERSATION_METHOD
        runs_enqueued = method == _vllm.ENQUEUED_RUNNER_METHOD

        def begin(llm: Any, messages: Any) -> Operation | None:
            if not self.active or _core.current_operation() is not None:
                return None
            try:
                engine = _vllm.llm_engine(llm)
                operation = Operation(
                    operation_name or self._enqueued_operation_name(engine),
                    _vllm.PROVIDER_NAME,
                    _vllm.model_name(engine),
                    current_parent(),
                    records_requests,
                    # Whether the core reads this call's finished outputs (its requests register there).
                    records_requests and self._reader is not None and self._requests is not None,
                    _vllm.now_ns(),
                )
                if captures_conversations and self.content.capture:
                    operation.conversations = _vllm.chat_conversations(messages)
                if runs_enqueued:
                    operation.runs_enqueued = True
                    operation.engine_id = id(engine)
                    operation.request_count = self._count_enqueued(engine)
                _core.set_current_operation(operation)
                return operation
            except Exception:  # noqa: BLE001
                _logger.debug("could not start an operation span", exc_info=True)
                return None

        return begin

    def _enqueue_wrapper(self, method: str) -> Callable[..., Any]:
        def wrapper(wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
            self._last_attributes = None  # parameters may have been changed between calls
            token = _enqueue_operation.set(_vllm.ENQUEUE_METHODS[method])
            try:
                return wrapped(*args, **kwargs)
            finally:
                _enqueue_operation.reset(token)

        return wrapper

    def _add_request_replacement(self, add_request: Callable[..., Any]) -> Callable[..., Any]:
        self._make_core_objects()
        register: Callable[..., None] = (
            self._requests.register if self._requests is not None else self._register_request
        )
        # The usual case: a function with add_request's own parameters (see _forwarding.py).
        forwarding = forwarding_function(add_request, register, _vllm.ENGINE_ADD_REQUEST.parameters)
        if forwarding is not None:
            return forwarding
        fields = _vllm.AddRequestArguments(add_request).fields

        def instrumented_add_request(engine: Any, *args: Any, **kwargs: Any) -> Any:
            result = add_request(engine, *args, **kwargs)
            register(engine, *fields(args, kwargs))
            return result

        return instrumented_add_request

    def _register_request(
        self, engine: Any, request_id: Any, prompt: Any, params: Any, lora_request: Any, priority: Any, prompt_text: Any
    ) -> None:
        """Registers, after vLLM accepted it, a request the core does not keep: an enqueued one, one of
        an operation whose outputs the shim reads itself (content captured), or one the core could
        not register. Never raises."""
        try:
            if not self.active:
                return
            operation = _core.current_operation()
            if operation is not None and not operation.records_requests:
                return
            last = self._last_attributes
            if (
                last is not None
                and last[0] is params
                and last[1] is lora_request
                and last[2] == priority
                and last[4] is operation
            ):
                attributes = last[3]
            else:
                attributes = _vllm.request_attributes(params, lora_request, priority)
                self._last_attributes = (params, lora_request, priority, attributes, operation)
            conversation = None
            if operation is not None:
                if operation.conversations and operation.request_count < len(operation.conversations):
                    conversation = operation.conversations[operation.request_count]
                operation.request_count += 1
            self._pending[(id(engine), str(request_id))] = (
                _vllm.now_ns(),
                attributes,
                operation,
                operation.name if operation is not None else (_enqueue_operation.get() or "text_completion"),
                # vLLM 0.11.1 passes the processed request as `prompt` and its text as `prompt_text`.
                (prompt_text or prompt) if self.content.capture else None,
                conversation,
            )
        except Exception:  # noqa: BLE001
            _logger.debug("could not register a request", exc_info=True)

    def _step_replacement(self, step: Callable[..., Any]) -> Callable[..., Any]:
        self._make_core_objects()
        record_step: Callable[[Any, Any], None] = (
            self._calls.record_step if self._calls is not None else self._record_step
        )
        # The usual case: a function with step's own parameters, which reports only the steps that
        # returned outputs (see _forwarding.py).
        forwarding = result_reporting_function(step, record_step, self._engine_failed)
        if forwarding is not None:
            return forwarding

        def instrumented_step(engine: Any, *args: Any, **kwargs: Any) -> Any:
            try:
                outputs = step(engine, *args, **kwargs)
            except Exception as error:
                self._engine_failed(engine, error)
                raise
            if outputs:
                record_step(engine, outputs)
            return outputs

        return instrumented_step

    def _engine_failed(self, engine: Any, error: BaseException) -> None:
        """``LLMEngine.step`` raised: the engine failed (EngineDeadError when its engine-core process
        died). Records the failure and keeps the states of its requests in flight, read when the
        call that ran them ends (``_end_unfinished_requests``). Never raises."""
        try:
            if not self.active:
                return
            _core.record_engine_failure(
                _vllm.PROVIDER_NAME, _vllm.model_name(engine), _vllm.FAILED_ENGINE_INDEX, _vllm.failure_type(error)
            )
            self._failed_engines[id(engine)] = (weakref.ref(engine), _vllm.unfinished_request_states(engine))
        except Exception:  # noqa: BLE001
            _logger.debug("could not record an engine failure", exc_info=True)

    # ---- recording --------------------------------------------------------------------------

    def _record_step(self, engine: Any, outputs: list[Any]) -> None:
        """Records the requests that finished in an engine step that returned ``outputs``, where the
        shim reads outputs (see ``OfflineCalls.record_step`` for the core's). Never raises."""
        if not self._pending:
            return
        try:
            self._record_finished(engine, outputs, _vllm.now_ns())
        except Exception:  # noqa: BLE001
            _logger.debug("could not record finished requests", exc_info=True)

    def _record_left_outputs(self, engine: Any, outputs: list[Any], end_ns: int) -> None:
        """The core's hand-over of the outputs it did not record (see ``OfflineCalls``)."""
        self._record_finished(engine, outputs, end_ns)

    def _record_finished(self, engine: Any, outputs: list[Any], end_ns: int) -> None:
        """The shim's own reading of finished outputs: its requests, and outputs the core left."""
        end_wall = end_ns / 1e9
        engine_id = id(engine)
        groups: dict[tuple[int, str], tuple[Operation | None, str, list[RequestRecord]]] = {}
        current = _core.current_operation()
        for output in outputs:
            if not _vllm.is_finished(output):
                continue
            request_id = str(output.request_id)
            pending = self._pending.pop((engine_id, request_id), None)
            if pending is None:
                continue
            added_ns, attributes, operation, operation_name, prompt, conversation = pending
            if operation is None and current is not None:
                # An enqueued request run by this call (wait_for_completion, or generate after enqueue).
                operation = current
                if not current.runs_enqueued:
                    current.request_count += 1
            try:
                record = self._request_record(output, added_ns, attributes, prompt, conversation, end_ns, end_wall)
            except Exception:  # noqa: BLE001
                # An output of a shape nobody expected must not cost the other requests of the step
                # their spans: this one is recorded with what add_request knew, nothing from the output.
                _logger.debug("could not read a finished request's output", exc_info=True)
                record = _bare_record(request_id, added_ns, attributes, end_ns, None)
            key = (id(operation), operation_name)
            if key not in groups:
                groups[key] = (operation, operation_name, [])
            groups[key][2].append(record)
        if groups:
            model = _vllm.model_name(engine)
            for operation, name, records in groups.values():
                self._send(operation, name, model, records)

    def _request_record(
        self,
        output: Any,
        added_ns: int,
        attributes: dict[str, Any],
        prompt: Any,
        conversation: Any,
        end_ns: int,
        end_wall: float,
    ) -> RequestRecord:
        start_ns, ttft, tpot, queue, prefill, decode, inference, e2e, preemptions = _vllm.timings(
            _vllm.request_stats(output), end_wall
        )
        input_tokens, output_tokens, cached = _vllm.token_counts(output)
        if preemptions or self.content.capture:
            attributes = dict(attributes)
            if preemptions:
                attributes["vllm.request.num_preemptions"] = preemptions
            if self.content.capture:
                attributes["gen_ai.input.messages"] = self.content.input_messages(prompt, conversation)
                attributes["gen_ai.output.messages"] = self.content.output_messages(_vllm.completions(output))
        return request_record(
            str(output.request_id),
            None,
            start_ns if start_ns is not None else added_ns,
            end_ns,
            input_tokens,
            output_tokens,
            cached,
            _vllm.finish_reasons(output),
            _vllm.error_type(output),
            ttft,
            tpot,
            queue,
            prefill,
            decode,
            inference,
            e2e,
            attributes,
        )

    def _send(self, operation: Operation | None, name: str, model: str | None, records: list[RequestRecord]) -> None:
        parent = operation.as_parent() if operation is not None else current_parent()
        header = (name, _vllm.PROVIDER_NAME, model, model, parent, SPAN_KIND_INTERNAL, None)
        _core.record_requests(header, records)

    def _end_operation(self, operation: Operation, error: BaseException | None) -> None:
        """Ends the operation ``begin`` made current and returned: its requests that never finished
        end with it, then its span. Never raises."""
        try:
            _core.set_current_operation(None)  # begin made it current only where none was
            end_ns = _vllm.now_ns()
            error_type = None if error is None else type(error).__qualname__
            if operation.core_reads:
                # The core's unfinished requests of this operation join the shim's, which end below.
                # (An operation the core reads was begun with the core's objects made; one that
                # outlived uninstrument() fails here as it always has, and is logged below.)
                requests = self._requests
                assert requests is not None
                requests.release(operation, self._pending)
            if self._pending:
                self._end_unfinished_requests(operation, end_ns, error_type)
            operation.end(end_ns, error_type)
        except Exception:  # noqa: BLE001
            _logger.debug("could not record an operation span", exc_info=True)

    def _end_unfinished_requests(self, operation: Operation, end_ns: int, error_type: str | None) -> None:
        """Requests of this operation that never finished (vLLM raised, or aborted them): their
        spans end now with the error; nothing is recorded for what vLLM did not report. The
        enqueued requests a failed wait_for_completion was running end with it too."""
        # A snapshot: other threads add requests meanwhile. dict.copy() runs without releasing the
        # GIL, where list(d.items()) can be interrupted by the garbage collector running Python code
        # and fail with "dictionary changed size during iteration".
        leftovers = [
            key
            for key, p in self._pending.copy().items()
            if p[OPERATION] is operation
            or (operation.runs_enqueued and p[OPERATION] is None and key[0] == operation.engine_id)
        ]
        records = []
        failed_engines = self._failed_engines
        for key in leftovers:
            pending = self._pending.pop(key, None)
            if pending is None:
                continue  # another thread's step finished and recorded it meanwhile
            failed = failed_engines.get(key[0])
            state = failed[1].get(key[1]) if failed is not None and failed[0]() is not None else None
            if state is not None:
                # The engine failed: what vLLM had for the request when it did.
                records.append(self._unfinished_record(key[1], pending, state, end_ns, error_type or "aborted"))
            else:
                records.append(
                    _bare_record(key[1], pending[ADDED_NS], pending[ATTRIBUTES], end_ns, error_type or "aborted")
                )
        for engine_id in {key[0] for key in leftovers}:
            failed_engines.pop(engine_id, None)
        if records:
            self._send(operation, operation.name, operation.model, records)

    def _unfinished_record(
        self, request_id: str, pending: PendingRequest, state: Any, end_ns: int, error_type: str
    ) -> RequestRecord:
        """A request the failed engine never finished: its tokens and timings so far (its RequestState,
        as serving reads one), ended at ``end_ns`` with ``error_type``."""
        try:
            start_ns, ttft, tpot, queue, prefill, decode, inference, e2e, _ = _vllm.timings(
                _vllm.request_state_stats(state), end_ns / 1e9
            )
            input_tokens, output_tokens, cached = _vllm.request_state_token_counts(state)
        except Exception:  # noqa: BLE001 - a state of a shape nobody expected: what add_request knew
            _logger.debug("could not read an unfinished request's state", exc_info=True)
            return _bare_record(request_id, pending[ADDED_NS], pending[ATTRIBUTES], end_ns, error_type)
        return request_record(
            request_id,
            None,
            start_ns if start_ns is not None else pending[ADDED_NS],
            end_ns,
            input_tokens,
            output_tokens,
            cached,
            None,
            error_type,
            ttft,
            tpot,
            queue,
            prefill,
            decode,
            inference,
            e2e,
            pending[ATTRIBUTES],
        )

    def _enqueued_operation_name(self, engine: Any) -> str:
        engine_id = id(engine)
        for (owner, _), pending in self._pending.copy().items():
            if owner == engine_id and pending[OPERATION] is None:
                name: str = pending[OPERATION_NAME]
                return name
        return "text_completion"

    def _count_enqueued(self, engine: Any) -> int:
        engine_id = id(engine)
        return sum(1 for (owner, _), p in self._pending.copy().items() if owner == engine_id and p[OPERATION] is None)


def _log_failure(what: str, error: BaseException) -> None:
    """The core's report of an exception it kept from the application (see src/offline/calls.rs)."""
    _logger.debug("could not %s", what, exc_info=error)


def _bare_record(
    request_id: str, start_ns: int, attributes: dict[str, Any], end_ns: int, error_type: str | None
) -> RequestRecord:
    """A request record with only what add_request knew: ids, times, parameters, no output values."""
    return request_record(
        request_id,
        None,
        start_ns,
        end_ns,
        None,
        None,
        None,
        None,
        error_type,
        None,
        None,
        None,
        None,
        None,
        None,
        None,
        attributes,
    )
