"""Bridge delivery: the fake vLLM's telemetry delivered through the application's Python SDK providers.

Set up as the contrib instrumentations' tests are (``tracer_provider`` with an InMemorySpanExporter,
``meter_provider`` with an InMemoryMetricReader, see conftest.py); the workload is the fake vLLM of
test_offline_fake.py, and the equivalence test compares it field by field with native OTLP export.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import Any

import fake_vllm.engine_core
import pytest
from fake_vllm import TREES
from helpers import QUIET_ARGUMENTS, clean_environment, run_python
from opentelemetry.instrumentation.vllm import VllmInstrumentor, _core, _vllm, force_flush, get_stats
from opentelemetry.instrumentation.vllm.version import __version__
from opentelemetry.metrics import Histogram, Meter, NoOpHistogram, NoOpMeter, NoOpMeterProvider
from opentelemetry.sdk.metrics.export import HistogramDataPoint, InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor
from opentelemetry.trace import SpanKind, StatusCode
from otlp_receivers import ReceivedMetric, ReceivedSpan

MODEL = "fake/tiny-llm"
SCOPE = "opentelemetry.instrumentation.vllm"
RESPONSE_ID = "gen_ai.response.id"
METRIC_NAMES = {spec[0] for spec in _core.METRICS}


@pytest.fixture
def instrument(vllm_tree: str) -> Iterator[Callable[..., VllmInstrumentor]]:
    instrumentor = VllmInstrumentor()
    assert not instrumentor.is_instrumented_by_opentelemetry

    def start(**arguments: Any) -> VllmInstrumentor:
        instrumentor.instrument(skip_dep_check=True, **QUIET_ARGUMENTS, **arguments)
        assert instrumentor.is_instrumented_by_opentelemetry
        return instrumentor

    yield start
    if instrumentor.is_instrumented_by_opentelemetry:
        instrumentor.uninstrument()


@pytest.fixture
def fixed_clock(monkeypatch: pytest.MonkeyPatch) -> Callable[[], None]:
    """Replaces the two wall clocks of the workload (the shim's and the fake frontend's) with one
    that advances 2**20 ns per reading; ``reset()`` restarts it, so two runs read equal times."""
    state = {"ns": 0}

    def reset() -> None:
        state["ns"] = 1_700_000_000 * 10**9

    def now_ns() -> int:
        state["ns"] += 2**20
        return state["ns"]

    class Clock:
        time = staticmethod(lambda: now_ns() / 1e9)
        sleep = staticmethod(fake_vllm.engine_core.time.sleep)

    monkeypatch.setattr(_vllm, "now_ns", now_ns)
    monkeypatch.setattr(fake_vllm.engine_core, "time", Clock)
    reset()
    return reset


def workload(app_tracer: Any) -> int:
    """One batch under a caller's span (n=2, a queue), then a batch the engine fails mid-way;
    returns the caller's span id."""
    from vllm import LLM, SamplingParams
    from vllm.v1.engine.exceptions import EngineDeadError

    llm = LLM(model=MODEL, max_num_seqs=2)
    params = SamplingParams(n=2, temperature=0.5, top_p=0.9, seed=7, max_tokens=3, stop=["\n\n"])
    with app_tracer.start_as_current_span("app") as app:
        llm.generate(["Hello there", "The capital of France is", "one two three"], params)
    failing = LLM(model=MODEL, max_num_seqs=2)
    failing.llm_engine.engine_core.raise_at_step(3, EngineDeadError("EngineCore encountered an issue"))
    with pytest.raises(EngineDeadError):
        failing.generate(["a", "b", "c", "d"], SamplingParams(max_tokens=2, ignore_eos=True))
    return app.get_span_context().span_id


def by_name(spans: list[ReadableSpan]) -> dict[str, list[ReadableSpan]]:
    out: dict[str, list[ReadableSpan]] = {}
    for span in spans:
        out.setdefault(span.name, []).append(span)
    return out


def points(reader: InMemoryMetricReader) -> dict[str, tuple[Any, list[HistogramDataPoint], Any]]:
    """{metric name: (metric, points, scope)} of our scope."""
    data = reader.get_metrics_data()
    out = {}
    for rm in data.resource_metrics if data else []:
        for sm in rm.scope_metrics:
            if sm.scope.name == SCOPE:
                for metric in sm.metrics:
                    out[metric.name] = (metric, list(metric.data.data_points), sm.scope)
    return out


# ---- bridge delivery ------------------------------------------------------------------------


def test_spans_are_recreated_in_the_tracer_provider_with_our_ids_parents_and_times(
    instrument, tracer_provider, meter_provider, span_exporter
):
    instrument(tracer_provider=tracer_provider, meter_provider=meter_provider)
    assert _core.delivery() == ("bridge", "bridge")
    from vllm import LLM, SamplingParams

    llm = LLM(model=MODEL, max_num_seqs=2)
    with tracer_provider.get_tracer("app").start_as_current_span("app", kind=SpanKind.SERVER) as app:
        outputs = llm.generate(["Hello there", "one two three"], SamplingParams(n=2, temperature=0.5, max_tokens=3))
    assert force_flush(5.0)

    spans = by_name(span_exporter.get_finished_spans())
    (app_span,) = spans.pop("app")
    ours = spans.pop(f"text_completion {MODEL}")
    assert not spans
    (operation,) = [s for s in ours if "gen_ai.response.id" not in s.attributes]
    requests = {s.attributes["gen_ai.response.id"]: s for s in ours if s is not operation}
    assert sorted(requests) == ["0", "1"]

    assert operation.kind is SpanKind.INTERNAL
    assert operation.context.trace_id == app.get_span_context().trace_id
    assert operation.parent.span_id == app_span.context.span_id
    assert operation.parent.is_remote is False
    assert operation.instrumentation_scope.name == SCOPE
    assert operation.instrumentation_scope.version == __version__
    assert operation.resource is tracer_provider.resource
    assert operation.status.status_code is StatusCode.UNSET
    assert dict(operation.attributes) == {
        "gen_ai.operation.name": "text_completion",
        "gen_ai.provider.name": "vllm",
        "gen_ai.request.model": MODEL,
        "gen_ai.response.model": MODEL,
        "vllm.operation.request_count": 2,
    }
    assert app_span.start_time <= operation.start_time <= operation.end_time <= app_span.end_time
    for output in outputs:
        span = requests[output.request_id]
        assert span.kind is SpanKind.INTERNAL
        assert span.context.trace_id == operation.context.trace_id
        assert span.parent.span_id == operation.context.span_id
        # Exact nanoseconds: vLLM's arrival time, as native export has it.
        assert span.start_time == int(output.metrics.arrival_time * 1e9)
        assert span.start_time <= span.end_time <= operation.end_time
        attributes = dict(span.attributes)
        assert attributes["gen_ai.usage.input_tokens"] == len(output.prompt_token_ids)
        assert type(attributes["gen_ai.usage.output_tokens"]) is int
        assert type(attributes["gen_ai.request.temperature"]) is float
        assert type(attributes["gen_ai.latency.time_to_first_token"]) is float
        assert attributes["gen_ai.response.finish_reasons"] == tuple(c.finish_reason for c in output.outputs)
        assert span.status.status_code is StatusCode.UNSET
    # Every span id the core reserved is the one the application's exporter got.
    assert len({s.context.span_id for s in ours}) == 3


def test_error_status_and_error_metrics_are_delivered(
    instrument, tracer_provider, meter_provider, span_exporter, metric_reader
):
    instrument(tracer_provider=tracer_provider, meter_provider=meter_provider)
    from vllm import LLM, SamplingParams
    from vllm.v1.engine.exceptions import EngineDeadError

    llm = LLM(MODEL, max_num_seqs=2)
    llm.llm_engine.engine_core.raise_at_step(3, EngineDeadError("EngineCore encountered an issue"))
    with pytest.raises(EngineDeadError):
        llm.generate(["a", "b", "c", "d"], SamplingParams(max_tokens=2, ignore_eos=True))
    assert force_flush(5.0)

    spans = span_exporter.get_finished_spans()
    failed = [s for s in spans if s.status.status_code is StatusCode.ERROR]
    assert len(failed) == 3  # the operation and the two requests pending when the engine died
    assert {s.status.description for s in failed} == {"EngineDeadError"}
    assert {s.attributes["error.type"] for s in failed} == {"EngineDeadError"}
    _, duration, _ = points(metric_reader)["gen_ai.server.request.duration"]
    errors = {p.attributes.get("error.type"): p.count for p in duration}
    assert errors == {None: 2, "EngineDeadError": 2}


def test_measurements_are_recorded_with_our_names_units_and_buckets(
    instrument, tracer_provider, meter_provider, metric_reader
):
    instrument(tracer_provider=tracer_provider, meter_provider=meter_provider)
    from vllm import LLM, SamplingParams

    llm = LLM(model=MODEL, max_num_seqs=2)
    outputs = llm.generate(["Hello there", "The capital of France is", "x"], SamplingParams(n=2, max_tokens=3))
    assert force_flush(5.0)

    got = points(metric_reader)
    specs = {name: (unit, description, buckets) for name, unit, description, buckets, _ in _core.METRICS}
    assert set(got) == METRIC_NAMES
    for name, (metric, data_points, _) in got.items():
        unit, description, buckets = specs[name]
        assert (metric.unit, metric.description) == (unit, description), name
        for point in data_points:
            assert list(point.explicit_bounds) == list(buckets), name
    assert got["gen_ai.server.time_to_first_token"][0].unit == "s"
    assert got["gen_ai.client.token.usage"][0].unit == "{token}"
    assert list(got["gen_ai.server.time_to_first_token"][1][0].explicit_bounds)[:3] == [0.001, 0.005, 0.01]
    assert {scope.version for _, _, scope in got.values()} == {__version__}

    (ttft,) = got["gen_ai.server.time_to_first_token"][1]
    assert ttft.count == 3
    assert ttft.sum == pytest.approx(sum(o.metrics.first_token_latency for o in outputs))
    assert dict(ttft.attributes) == {
        "gen_ai.operation.name": "text_completion",
        "gen_ai.provider.name": "vllm",
        "gen_ai.request.model": MODEL,
        "gen_ai.response.model": MODEL,
    }
    tokens = {p.attributes["gen_ai.token.type"]: p for p in got["gen_ai.client.token.usage"][1]}
    assert tokens["input"].sum == sum(len(o.prompt_token_ids) for o in outputs)
    assert tokens["output"].sum == sum(len(c.token_ids) for o in outputs for c in o.outputs)
    assert type(tokens["output"].sum) is int  # recorded as the integer histogram it is natively
    (operation,) = got["gen_ai.client.operation.duration"][1]
    assert operation.count == 1
    assert get_stats()["measurements_bridged"] == sum(p.count for _, ps, _ in got.values() for p in ps)


def test_only_the_tracer_provider_given_keeps_metrics_native(instrument, tracer_provider, span_exporter, http_receiver):
    instrument(tracer_provider=tracer_provider, endpoint=http_receiver.endpoint)
    assert _core.delivery() == ("bridge", "otlp")
    from vllm import LLM, SamplingParams

    LLM(MODEL).generate(["a", "b"], SamplingParams(max_tokens=2))
    assert force_flush(5.0)
    assert len(span_exporter.get_finished_spans()) == 3
    assert http_receiver.spans() == []
    received = {m.name: m for m in http_receiver.latest_metrics()}
    assert sum(p.count for p in received["gen_ai.server.request.duration"].points) == 2


def test_failures_in_the_applications_pipeline_stay_there_and_are_counted(
    instrument, tracer_provider, span_exporter, fresh_core_warnings, caplog
):
    class ExplodingProcessor(SpanProcessor):
        def on_end(self, span: ReadableSpan) -> None:
            raise RuntimeError("processor bug")

    class ExplodingHistogram(NoOpHistogram):
        def record(self, amount, attributes=None, context=None) -> None:
            raise ValueError("instrument bug")

    class ExplodingMeter(NoOpMeter):
        def create_histogram(self, name, unit="", description="", **kwargs) -> Histogram:
            return ExplodingHistogram(name, unit, description)

    class ExplodingMeterProvider(NoOpMeterProvider):
        def get_meter(self, name, version=None, schema_url=None, attributes=None) -> Meter:
            return ExplodingMeter(name)

    tracer_provider.add_span_processor(ExplodingProcessor())
    instrument(tracer_provider=tracer_provider, meter_provider=ExplodingMeterProvider())
    from vllm import LLM, SamplingParams

    caplog.set_level(logging.WARNING, "opentelemetry.instrumentation.vllm")
    outputs = LLM(MODEL).generate(["a", "b"], SamplingParams(max_tokens=2))  # nothing raised here
    assert len(outputs) == 2
    assert force_flush(5.0) is False  # the failed delivery is reported, not raised
    stats = get_stats()
    assert stats["spans_export_failed"] == 3
    assert stats["spans_exported"] == 0
    assert stats["measurements_bridged"] == 0
    assert stats["measurements_bridge_failed"] > 0
    # The processors before the broken one still saw the spans.
    assert len(span_exporter.get_finished_spans()) == 3
    messages = [r.getMessage() for r in caplog.records]
    assert any("processor bug" in m for m in messages), messages
    assert any("instrument bug" in m for m in messages), messages


# ---- equivalence with native export ---------------------------------------------------------------


def _typed(value: Any) -> tuple[str, Any]:
    """A Python attribute value as otlp_receivers.typed_value decodes the OTLP one."""
    if isinstance(value, bool):
        return "bool_value", value
    if isinstance(value, int):
        return "int_value", value
    if isinstance(value, float):
        return "double_value", value
    if isinstance(value, str):
        return "string_value", value
    return "array_value", tuple(_typed(v) for v in value)


class Labels:
    """Ids are random per run: each becomes its role (app, operation n, request id, trace n)."""

    def __init__(self) -> None:
        self.labels: dict[tuple[str, int], str] = {}

    def __call__(self, kind: str, value: int, label: str | None = None) -> str | None:
        if not value:
            return None
        key = (kind, value)
        if key not in self.labels:
            self.labels[key] = label or f"{kind} {sum(1 for k, _ in self.labels if k == kind)}"
        return self.labels[key]


def _span_row(
    labels: Labels, name, kind, trace_id, span_id, parent_id, parent_remote, flags, start, end, attrs, status, scope
):
    role = dict(attrs).get("gen_ai.response.id", ("", None))[1] or None
    return {
        "name": name,
        "kind": kind,
        "trace": labels("trace", trace_id),
        "span": labels("span", span_id, f"request {role}" if role else None),
        "parent": labels("span", parent_id),
        "parent_is_remote": parent_remote,
        "flags": flags,
        "start": start,
        "end": end,
        "attributes": attrs,
        "status": status,
        "scope": scope,
    }


def native_spans(received: list[ReceivedSpan], app_span_id: int, labels: Labels) -> list[dict]:
    labels("span", app_span_id, "app")
    kinds = {1: "INTERNAL", 2: "SERVER", 3: "CLIENT", 4: "PRODUCER", 5: "CONSUMER"}
    status_codes = {0: "UNSET", 1: "OK", 2: "ERROR"}
    return [
        _span_row(
            labels,
            s.name,
            kinds[s.span.kind],
            s.trace_id,
            s.span_id,
            s.parent_span_id,
            bool(s.span.flags & 0x200),  # OTLP: HAS_IS_REMOTE | IS_REMOTE
            s.span.flags & 0xFF,
            s.span.start_time_unix_nano,
            s.span.end_time_unix_nano,
            sorted(s.typed_attributes.items()),
            (status_codes[s.span.status.code], s.span.status.message),
            (s.scope.name, s.scope.version),
        )
        for s in sorted(
            received, key=lambda s: (s.span.start_time_unix_nano, s.name, s.attributes.get("gen_ai.response.id", ""))
        )
    ]


def bridged_spans(spans: list[ReadableSpan], labels: Labels) -> list[dict]:
    (app,) = [s for s in spans if s.name == "app"]
    labels("span", app.context.span_id, "app")
    ours = [s for s in spans if s.instrumentation_scope.name == SCOPE]
    return [
        _span_row(
            labels,
            s.name,
            s.kind.name,
            s.context.trace_id,
            s.context.span_id,
            s.parent.span_id if s.parent else 0,
            bool(s.parent and s.parent.is_remote),
            int(s.context.trace_flags),
            s.start_time,
            s.end_time,
            sorted((k, _typed(v)) for k, v in s.attributes.items()),
            (s.status.status_code.name, s.status.description or ""),
            (s.instrumentation_scope.name, s.instrumentation_scope.version),
        )
        for s in sorted(ours, key=lambda s: (s.start_time, s.name, s.attributes.get(RESPONSE_ID, "")))
    ]


def native_metrics(received: list[ReceivedMetric]) -> dict[str, Any]:
    out = {}
    for m in received:
        if m.name not in METRIC_NAMES:
            continue
        assert m.kind == "histogram"
        rows = sorted(
            (
                sorted(a.items()),
                p.count,
                p.sum,
                list(p.bucket_counts),
                list(p.explicit_bounds),
                p.min,
                p.max,
            )
            for a, p in zip(m.point_attributes(), m.points, strict=True)
        )
        temporality = "CUMULATIVE" if m.metric.histogram.aggregation_temporality == 2 else "DELTA"
        out[m.name] = (m.metric.unit, m.metric.description, temporality, m.scope.name, m.scope.version, rows)
    return out


def bridged_metrics(reader: InMemoryMetricReader) -> dict[str, Any]:
    """The histograms (the engine failure counter: ``failure_counts``)."""
    out = {}
    for name, (metric, data_points, scope) in points(reader).items():
        if name not in METRIC_NAMES:
            continue
        rows = sorted(
            (
                sorted(p.attributes.items()),
                p.count,
                p.sum,
                list(p.bucket_counts),
                [float(b) for b in p.explicit_bounds],
                p.min,
                p.max,
            )
            for p in data_points
        )
        temporality = metric.data.aggregation_temporality.name
        out[name] = (metric.unit, metric.description, temporality, scope.name, scope.version, rows)
    return out


ENGINE_FAILURES = _core.ENGINE_FAILURE_METRIC[0]


def failure_counts(unit: str, description: str, kind: str, attributes: list[dict], values: list[int]) -> Any:
    """The engine failure counter as both deliveries must show it."""
    return (unit, description, kind, sorted((sorted(a.items()), v) for a, v in zip(attributes, values, strict=True)))


def test_native_and_bridge_deliver_the_same_spans_and_metric_points(
    instrument, fixed_clock, http_receiver, tracer_provider, meter_provider, span_exporter, metric_reader
):
    """The same workload, read at the same (fixed) clock, once exported natively as OTLP and once
    bridged into in-memory SDK components. Normalised, because they must differ: ids (random per
    run: compared by role, so every parent link is still checked), the resource (the bridge uses the
    application's, by design) and metric collection timestamps."""
    app_tracer = tracer_provider.get_tracer("app")

    instrumentor = instrument(endpoint=http_receiver.endpoint)
    assert _core.delivery() == ("otlp", "otlp")
    native_app_span = workload(app_tracer)
    assert force_flush(5.0)
    native_labels = Labels()
    native = (
        native_spans(http_receiver.spans(), native_app_span, native_labels),
        native_metrics(http_receiver.latest_metrics()),
    )
    (native_failures,) = [m for m in http_receiver.latest_metrics() if m.name == ENGINE_FAILURES]
    native_failure_counts = failure_counts(
        native_failures.metric.unit,
        native_failures.metric.description,
        "monotonic sum" if native_failures.metric.sum.is_monotonic else native_failures.kind,
        native_failures.point_attributes(),
        [p.as_int for p in native_failures.points],
    )
    instrumentor.uninstrument()
    assert _core.shutdown(5.0)
    span_exporter.clear()

    fixed_clock()
    instrument(tracer_provider=tracer_provider, meter_provider=meter_provider)
    assert _core.delivery() == ("bridge", "bridge")
    workload(app_tracer)
    assert force_flush(5.0)
    bridged = (bridged_spans(list(span_exporter.get_finished_spans()), Labels()), bridged_metrics(metric_reader))

    native_span_rows, native_metric_rows = native
    bridged_span_rows, bridged_metric_rows = bridged
    assert len(native_span_rows) == 1 + 3 + 1 + 4  # two operations, seven requests
    assert [r["parent"] for r in native_span_rows].count("app") == 1
    assert len(bridged_span_rows) == len(native_span_rows)
    for native_row, bridged_row in zip(native_span_rows, bridged_span_rows, strict=True):
        assert bridged_row == native_row
    assert set(native_metric_rows) == METRIC_NAMES
    for name in METRIC_NAMES:
        assert bridged_metric_rows[name] == native_metric_rows[name], name
    # The workload's failed engine, counted once in each delivery.
    metric, failure_points, _ = points(metric_reader)[ENGINE_FAILURES]
    bridged_failure_counts = failure_counts(
        metric.unit,
        metric.description,
        "monotonic sum" if metric.data.is_monotonic else "sum",
        [dict(p.attributes) for p in failure_points],
        [p.value for p in failure_points],
    )
    assert bridged_failure_counts == native_failure_counts
    assert native_failure_counts[3] == [
        (
            sorted(
                {
                    "error.type": "EngineDeadError",
                    "gen_ai.provider.name": "vllm",
                    "gen_ai.request.model": MODEL,
                    "vllm.engine.index": 0,
                }.items()
            ),
            1,
        )
    ]


# ---- the notebook case: an SDK configured in code, nothing passed ---------------------------------


def test_sdk_configured_in_code_gets_our_spans_at_exit_without_a_flush():
    """A ConsoleSpanExporter behind a BatchSpanProcessor, instrument() without arguments, no flush:
    the process exits on its own (no deadlock between our exit hook and the bridge) and the
    console shows our spans."""
    script = f"""
    sys.path.insert(0, {str(TREES["0.32"])!r})
    from opentelemetry import metrics, trace
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import ConsoleMetricExporter, PeriodicExportingMetricReader
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter
    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(ConsoleSpanExporter()))
    trace.set_tracer_provider(provider)
    reader = PeriodicExportingMetricReader(ConsoleMetricExporter(), export_interval_millis=600000)
    metrics.set_meter_provider(MeterProvider(metric_readers=[reader]))
    from opentelemetry.instrumentation.vllm import VllmInstrumentor
    VllmInstrumentor().instrument(skip_dep_check=True)
    assert _core.delivery() == ("bridge", "bridge"), _core.delivery()
    from vllm import LLM, SamplingParams
    LLM("fake/tiny-llm").generate(["a", "b"], SamplingParams(max_tokens=2))
    print("generated", flush=True)
    """
    result = run_python(script, clean_environment())
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert out.startswith("generated")
    assert out.count('"name": "text_completion fake/tiny-llm"') == 3
    assert '"gen_ai.server.request.duration"' in out


def test_a_forked_child_delivers_its_own_spans_through_the_same_provider():
    script = """
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import ConsoleSpanExporter, SimpleSpanProcessor
    from opentelemetry.instrumentation.vllm import VllmInstrumentor, force_flush
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(ConsoleSpanExporter()))
    VllmInstrumentor().instrument(skip_dep_check=True, tracer_provider=provider)

    def record(model):
        parent = _core.new_span_context(None, "text_completion", model)
        header = batch_header(request_model=model, parent=as_parent(parent))
        assert _core.record_requests(header, [request_record()]) == 1

    record("parent-model")
    assert force_flush(5.0)
    sys.stdout.flush()
    pid = os.fork()
    if pid == 0:
        record("child-model")
        ok = force_flush(5.0) and _core.delivery() == ("bridge", "none")
        sys.stdout.flush()
        os._exit(0 if ok else 3)
    _, status = os.waitpid(pid, 0)
    print("child exit code", os.waitstatus_to_exitcode(status))
    """
    result = run_python(script, clean_environment(OTEL_METRICS_EXPORTER="none"))
    assert result.returncode == 0, result.stderr
    assert result.stdout.count('"name": "text_completion parent-model"') == 1
    assert result.stdout.count('"name": "text_completion child-model"') == 1
    assert "child exit code 0" in result.stdout
