"""Bridge delivery: re-creates the core's spans and measurements through Python SDK providers.

The core calls ``SPANS`` and ``METRICS`` from its own threads, once per batch (see src/export/bridge.rs);
they return ``(undelivered, first_error)`` and never raise for one bad item. Both are module-level
objects so that a later ``instrument()`` (a test with new providers) only swaps their target.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Sequence
from typing import Any

from opentelemetry import context as context_api
from opentelemetry import metrics, trace
from opentelemetry.instrumentation.vllm import _core
from opentelemetry.instrumentation.vllm.version import __version__
from opentelemetry.metrics import Observation
from opentelemetry.trace import NonRecordingSpan, SpanContext, SpanKind, Status, StatusCode, TraceFlags

SCOPE = "opentelemetry.instrumentation.vllm"
_logger = logging.getLogger("opentelemetry.instrumentation.vllm")


class _PresetIds:
    """An SDK ``IdGenerator`` that returns the core's ids for the span being re-created on this
    thread, and the original generator's otherwise (the SDK caches one Tracer per scope)."""

    def __init__(self, fallback: Any) -> None:
        self.fallback = fallback
        self._local = threading.local()

    def preset(self, trace_id: int, span_id: int) -> None:
        self._local.ids = (trace_id, span_id)

    def clear(self) -> None:
        self._local.ids = None

    def _ids(self) -> tuple[int, int] | None:
        return getattr(self._local, "ids", None)

    def generate_trace_id(self) -> int:
        ids = self._ids()
        return ids[0] if ids else self.fallback.generate_trace_id()

    def generate_span_id(self) -> int:
        ids = self._ids()
        return ids[1] if ids else self.fallback.generate_span_id()

    def is_trace_id_random(self) -> bool:
        # Native export sets only the sampled flag; keep the flags identical.
        return False if self._ids() else self.fallback.is_trace_id_random()


class _Bridge:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._provider: Any = None

    def set_provider(self, provider: Any) -> None:
        """``None``: the global provider at delivery time."""
        with self._lock:
            self._provider = provider

    def _global_provider(self) -> Any:
        raise NotImplementedError

    def provider(self) -> Any:
        return self._provider if self._provider is not None else self._global_provider()

    def flush_provider(self, timeout: float) -> bool:
        """Flushes the provider (its processors and readers export what was delivered)."""
        flush = getattr(self.provider(), "force_flush", None)
        if flush is None:
            return True
        try:
            return flush(int(timeout * 1000)) is not False
        except Exception:  # noqa: BLE001 - the application's exporter must not break our caller
            _logger.debug("force_flush of the bridged provider failed", exc_info=True)
            return False


class SpanBridge(_Bridge):
    def _global_provider(self) -> Any:
        return trace.get_tracer_provider()

    def _tracer(self) -> tuple[Any, _PresetIds | None]:
        tracer = self.provider().get_tracer(SCOPE, __version__)
        generator = getattr(tracer, "id_generator", None)
        if generator is None:
            # Not an SDK tracer: spans get that implementation's ids (parents between our own
            # spans are then lost); nothing else can be done through the API.
            return tracer, None
        if not isinstance(generator, _PresetIds):
            generator = _PresetIds(generator)
            tracer.id_generator = generator
        return tracer, generator

    def __call__(self, batch: Sequence[tuple[Any, ...]]) -> tuple[int, str | None]:
        failed, first_error = 0, None
        with self._lock:
            tracer, ids = self._tracer()
            for span in batch:
                try:
                    self._recreate(tracer, ids, *span)
                except Exception as error:  # noqa: BLE001 - one bad span must not lose the batch
                    failed += 1
                    first_error = first_error or f"{type(error).__name__}: {error}"
        return failed, first_error

    @staticmethod
    def _recreate(
        tracer: Any,
        ids: _PresetIds | None,
        name: str,
        kind: int,
        trace_id: int,
        span_id: int,
        parent_span_id: int,
        parent_is_remote: bool,
        flags: int,
        start_ns: int,
        end_ns: int,
        attributes: dict[str, Any],
        status_code: int,
        status_description: str | None,
    ) -> None:
        # An empty context, never the delivering thread's current one.
        parent = context_api.Context()
        if parent_span_id:
            # The parent carries the span's own flags: it was sampled, or the core would have
            # dropped its child.
            parent_context = SpanContext(trace_id, parent_span_id, parent_is_remote, TraceFlags(flags))
            parent = trace.set_span_in_context(NonRecordingSpan(parent_context), parent)
        if ids is not None:
            ids.preset(trace_id, span_id)
        try:
            span = tracer.start_span(
                name, context=parent, kind=SpanKind(kind), attributes=attributes, start_time=start_ns
            )
        finally:
            if ids is not None:
                ids.clear()
        if status_code:
            code = StatusCode(status_code)
            span.set_status(Status(code, status_description if code is StatusCode.ERROR else None))
        span.end(end_time=end_ns)


# The core's measurement groups index this: the default conventions' instruments, then the latest's.
_ALL_METRICS = _core.METRICS + _core.LATEST_METRICS


class MetricBridge(_Bridge):
    def __init__(self) -> None:
        super().__init__()
        # (provider, meter, instruments by METRICS index): created again when the provider changes.
        # Each instrument is made at its first measurement: the table holds both semconv modes'
        # instruments, and only those the running mode records may be exported.
        self._instruments_of: tuple[Any, Any, list[Any]] | None = None

    def _global_provider(self) -> Any:
        return metrics.get_meter_provider()

    def _instruments(self) -> tuple[Any, list[Any]]:
        provider = self.provider()
        if self._instruments_of is None or self._instruments_of[0] is not provider:
            meter = provider.get_meter(SCOPE, __version__)
            _observe_engines(meter)
            self._instruments_of = (provider, meter, [None] * len(_ALL_METRICS))
        return self._instruments_of[1], self._instruments_of[2]

    @staticmethod
    def _create(meter: Any, index: int) -> Any:
        name, unit, description, buckets, _integer = _ALL_METRICS[index]
        if index in _core.COUNTER_METRICS:
            return meter.create_counter(name, unit=unit, description=description).add
        return meter.create_histogram(
            name, unit=unit, description=description, explicit_bucket_boundaries_advisory=list(buckets)
        ).record

    def prepare(self) -> None:
        """Creates the meter now, so the engine gauges are observed before any request ends."""
        with self._lock:
            try:
                self._instruments()
            except Exception:  # noqa: BLE001 - created again at the first delivery
                _logger.debug("could not create the bridged instruments", exc_info=True)

    def __call__(self, groups: Sequence[tuple[int, dict[str, Any], list[float]]]) -> tuple[int, str | None]:
        failed, first_error = 0, None
        with self._lock:
            try:
                meter, instruments = self._instruments()
                for index, _, _ in groups:
                    if instruments[index] is None:
                        instruments[index] = self._create(meter, index)
            except Exception as error:  # noqa: BLE001
                return sum(len(values) for _, _, values in groups), f"{type(error).__name__}: {error}"
            for index, attributes, values in groups:
                record = instruments[index]
                for value in values:
                    try:
                        record(value, attributes)
                    except Exception as error:  # noqa: BLE001 - one bad value must not lose the batch
                        failed += 1
                        first_error = first_error or f"{type(error).__name__}: {error}"
        return failed, first_error


def _observe_engines(meter: Any) -> None:
    """The engine gauges, preemption and failure counters, read from the core's latest engine states when the
    application's reader collects (nothing runs per engine step in Python)."""
    (running, waiting, usage, preemptions) = _core.ENGINE_METRICS

    def observer(field: int) -> Any:
        def observe(_options: Any) -> list[Observation]:
            observations = []
            for provider, model, index, labels, *values in _core.engine_states():
                value = values[field]
                if value is not None:
                    attributes: dict[str, str | int] = {"gen_ai.provider.name": provider, "vllm.engine.index": index}
                    if model is not None:
                        attributes["gen_ai.request.model"] = model
                    attributes.update(labels)
                    observations.append(Observation(value, attributes))
            return observations

        return observe

    for field, (name, unit, description) in enumerate((running, waiting, usage)):
        meter.create_observable_gauge(name, callbacks=[observer(field)], unit=unit, description=description)
    name, unit, description = preemptions
    meter.create_observable_counter(name, callbacks=[observer(3)], unit=unit, description=description)

    def observe_failures(_options: Any) -> list[Observation]:
        observations = []
        for provider, model, index, labels, error_type, count in _core.engine_failures():
            attributes: dict[str, str | int] = {
                "gen_ai.provider.name": provider,
                "vllm.engine.index": index,
                "error.type": error_type,
            }
            if model is not None:
                attributes["gen_ai.request.model"] = model
            attributes.update(labels)
            observations.append(Observation(count, attributes))
        return observations

    name, unit, description = _core.ENGINE_FAILURE_METRIC
    meter.create_observable_counter(name, callbacks=[observe_failures], unit=unit, description=description)


SPANS = SpanBridge()
METRICS = MetricBridge()


def _after_fork_in_child() -> None:
    # A parent's core thread may have been delivering (holding a lock) when the process forked;
    # the child's rebuilt pipeline delivers through the same objects with fresh locks.
    for bridge in (SPANS, METRICS):
        bridge._lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
