"""Process lifecycle: export at interpreter exit, fork, shutdown (subprocesses for whole-process behaviour)."""

from __future__ import annotations

import collections
import json
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import QUIET_SETTINGS, batch_header, clean_environment, operation_record, request_record, run_python
from opentelemetry.instrumentation.vllm import _core
from otlp_receivers import GrpcReceiver, HttpReceiver


def child_environment(receiver, **extra: str) -> dict[str, str]:
    return clean_environment(OTEL_EXPORTER_OTLP_ENDPOINT=receiver.endpoint, **{**QUIET_SETTINGS, **extra})


def span_names(receiver) -> collections.Counter:
    return collections.Counter(s.name for s in receiver.spans())


def metric_models(request) -> set[str]:
    from otlp_receivers import metrics_of

    return {
        p["gen_ai.request.model"]
        for m in metrics_of([request])
        for p in m.point_attributes()
        if "gen_ai.request.model" in p
    }


def test_instrumented_process_exports_at_exit_without_a_flush(http_receiver):
    script = """
        from opentelemetry.instrumentation.vllm import VllmInstrumentor
        VllmInstrumentor().instrument(skip_dep_check=True)
        assert _core.record_requests(batch_header(request_model="at-exit"), [request_record()] * 2) == 2
        context = _core.new_span_context(None, "text_completion", "at-exit")
        assert _core.record_operation(operation_record(context, request_model="at-exit"))
        print("recorded", flush=True)
    """
    result = run_python(script, child_environment(http_receiver))
    assert result.returncode == 0, result.stderr
    assert "recorded" in result.stdout
    assert span_names(http_receiver) == {"text_completion at-exit": 3}
    names = {m.name for m in http_receiver.metrics()}
    assert {"gen_ai.server.request.duration", "gen_ai.client.operation.duration"} <= names


def test_latency_summary_is_logged_at_exit_when_asked(http_receiver):
    script = """
        from opentelemetry.instrumentation.vllm import VllmInstrumentor
        VllmInstrumentor().instrument(skip_dep_check=True)
        assert _core.record_requests(batch_header(request_model="summarised"), [request_record(e2e=0.25)]) == 1
    """
    env = child_environment(
        http_receiver,
        OTEL_INSTRUMENTATION_VLLM_LATENCY_SUMMARY="true",
        OTEL_TRACES_EXPORTER="none",
        OTEL_METRICS_EXPORTER="none",
    )
    result = run_python(script, env)
    assert result.returncode == 0, result.stderr
    assert "vLLM latency summary" in result.stderr
    lines = [x for x in result.stderr.splitlines() if x.startswith("gen_ai.server.request.duration")]
    assert len(lines) == 1, result.stderr
    assert lines[0].split()[1:3] == ["summarised", "1"]
    assert http_receiver.requests == []


def test_no_latency_summary_by_default(http_receiver):
    script = """
        from opentelemetry.instrumentation.vllm import VllmInstrumentor
        VllmInstrumentor().instrument(skip_dep_check=True)
        assert _core.record_requests(batch_header(), [request_record()]) == 1
    """
    result = run_python(script, child_environment(http_receiver, OTEL_TRACES_EXPORTER="none"))
    assert result.returncode == 0, result.stderr
    assert "latency summary" not in result.stderr


@pytest.mark.parametrize("protocol", ["http/protobuf", "grpc"])
def test_exit_is_bounded_by_the_shutdown_timeout_when_the_collector_hangs(protocol):
    with HttpReceiver() if protocol == "http/protobuf" else GrpcReceiver() as hanging:
        hanging.hold()
        script = """
            from opentelemetry.instrumentation.vllm import VllmInstrumentor
            VllmInstrumentor().instrument(skip_dep_check=True, shutdown_timeout_ms=300)
            assert _core.record_requests(batch_header(), [request_record()]) == 1
            print("exiting", flush=True)
        """
        # The subprocess timeout is the hang guard: exit must not wait for the 60 s response.
        env = child_environment(hanging, OTEL_EXPORTER_OTLP_PROTOCOL=protocol, OTEL_EXPORTER_OTLP_TIMEOUT="60000")
        result = run_python(script, env, timeout=30)
        assert result.returncode == 0, result.stderr
        assert "exiting" in result.stdout
        assert hanging.requests, "the export was attempted before giving up"


FORK_SCRIPT = """
    import json
    {setup}
    assert _core.record_requests(batch_header(request_model="parent-before"), [request_record()]) == 1
    pid = os.fork()
    if pid == 0:
        # The child's own pipeline: the parent's queue (with "parent-before") must not be exported here.
        ok = _core.record_requests(batch_header(request_model="child"), [request_record()]) == 1
        ok = _core.force_flush(5.0) and ok
        stats = _core.stats()
        print("child", json.dumps(stats), flush=True)
        os._exit(0 if ok else 1)
    print("pids", os.getpid(), pid, flush=True)
    _, status = os.waitpid(pid, 0)
    print("child exit", os.waitstatus_to_exitcode(status), flush=True)
    assert _core.record_requests(batch_header(request_model="parent-after"), [request_record()]) == 1
    assert _core.force_flush(5.0)
    print("parent", json.dumps(_core.stats()), flush=True)
"""

SETUPS = {
    "instrumentor": "from opentelemetry.instrumentation.vllm import VllmInstrumentor\n"
    "    VllmInstrumentor().instrument(skip_dep_check=True)",
    # No at-fork hook registered: the core notices the new pid by itself.
    "core-only": "assert _core.configure()",
}


@pytest.mark.parametrize("setup", sorted(SETUPS))
def test_forked_child_exports_its_own_telemetry_and_the_parent_keeps_working(http_receiver, setup):
    result = run_python(FORK_SCRIPT.format(setup=SETUPS[setup]), child_environment(http_receiver))
    assert result.returncode == 0, result.stderr
    assert "child exit 0" in result.stdout, result.stdout + result.stderr
    child_stats = [line for line in result.stdout.splitlines() if line.startswith("child {")]
    assert len(child_stats) == 1 and '"requests_recorded": 1' in child_stats[0]
    assert span_names(http_receiver) == {
        "text_completion parent-before": 1,
        "text_completion child": 1,
        "text_completion parent-after": 1,
    }
    exports = [metric_models(r) for r in http_receiver.metric_requests()]
    assert {"child"} in exports, exports
    assert all("child" not in models or models == {"child"} for models in exports), exports
    assert any(models == {"parent-before", "parent-after"} for models in exports), exports
    # The child is another instance: a new service.instance.id and its own pid, the parent keeps its.
    (pids,) = [line.split()[1:] for line in result.stdout.splitlines() if line.startswith("pids ")]
    parent_pid, child_pid = map(int, pids)
    identity = {
        s.attributes.get("gen_ai.request.model"): (s.resource["service.instance.id"], s.resource["process.pid"])
        for s in http_receiver.spans()
    }
    assert identity["parent-before"] == identity["parent-after"]
    assert identity["parent-before"][1] == parent_pid and identity["child"][1] == child_pid
    assert identity["child"][0] != identity["parent-before"][0]


def test_forked_child_that_exits_normally_exports_at_exit(http_receiver):
    script = """
        from opentelemetry.instrumentation.vllm import VllmInstrumentor
        VllmInstrumentor().instrument(skip_dep_check=True)
        pid = os.fork()
        if pid == 0:
            assert _core.record_requests(batch_header(request_model="child"), [request_record()]) == 1
            sys.exit(0)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
    """
    result = run_python(script, child_environment(http_receiver))
    assert result.returncode == 0, result.stderr
    assert span_names(http_receiver) == {"text_completion child": 1}


def test_multiprocessing_worker_exports_what_it_recorded(http_receiver):
    script = """
        import multiprocessing
        from opentelemetry.instrumentation.vllm import VllmInstrumentor

        def worker():
            assert _core.record_requests(batch_header(request_model="worker"), [request_record()]) == 1

        VllmInstrumentor().instrument(skip_dep_check=True)
        process = multiprocessing.get_context("fork").Process(target=worker)
        process.start()
        process.join()
        assert process.exitcode == 0
    """
    result = run_python(script, child_environment(http_receiver))
    assert result.returncode == 0, result.stderr
    assert span_names(http_receiver) == {"text_completion worker": 1}


def test_shutdown_flushes_and_is_idempotent(pipeline, http_receiver):
    assert pipeline(http_receiver)
    assert _core.record_requests(batch_header(), [request_record()] * 2) == 2
    assert _core.is_enabled()
    assert _core.shutdown(5.0) is True
    assert len(http_receiver.spans()) == 2
    assert http_receiver.metrics()
    assert _core.is_enabled() is False
    assert _core.shutdown(5.0) is True
    assert _core.shutdown(0.0) is True


def test_recording_after_shutdown_is_dropped_and_counted(pipeline, http_receiver):
    assert pipeline(http_receiver)
    assert _core.shutdown(5.0)
    exported = len(http_receiver.requests)
    assert _core.record_requests(batch_header(), [request_record()] * 3) == 0
    context = _core.new_span_context(None, "text_completion", "tiny")
    assert _core.record_operation(operation_record(context)) is False
    stats = _core.stats()
    assert stats["requests_dropped"] == 3
    assert stats["requests_recorded"] == 0
    assert _core.force_flush(1.0) in (True, False)
    assert len(http_receiver.requests) == exported


SPAWN_SCRIPT = """
import multiprocessing
import os
import sys

sys.path.insert(0, {tests!r})
from helpers import batch_header, request_record
from opentelemetry.instrumentation.vllm import VllmInstrumentor, _core

# At import, as an application does: a spawn child imports this module again (as __mp_main__), so
# it instruments itself in its own fresh interpreter.
VllmInstrumentor().instrument(skip_dep_check=True, shutdown_timeout_ms=2000)


def worker(tag):
    assert _core.record_requests(batch_header(request_model=tag), [request_record()]) == 1


if __name__ == "__main__":
    assert _core.record_requests(batch_header(request_model="parent"), [request_record()]) == 1
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=worker, args=(f"spawned-{{i}}",)) for i in range(2)]
    for process in workers:
        process.start()
    for process in workers:
        process.join(60)
    print("exit codes", [p.exitcode for p in workers], flush=True)
"""


def test_multiprocessing_spawn_children_export_their_own_telemetry_and_exit(http_receiver, tmp_path):
    script = tmp_path / "spawning_app.py"
    script.write_text(SPAWN_SCRIPT.format(tests=str(Path(__file__).parent)))
    # The subprocess timeout is the hang guard for the parent and its spawned children.
    result = subprocess.run(
        [sys.executable, str(script)], env=child_environment(http_receiver), capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert "exit codes [0, 0]" in result.stdout, result.stdout + result.stderr
    assert span_names(http_receiver) == {
        "text_completion parent": 1,
        "text_completion spawned-0": 1,
        "text_completion spawned-1": 1,
    }
    exports = [metric_models(r) for r in http_receiver.metric_requests()]
    assert sorted(tuple(sorted(m)) for m in exports if m) == [("parent",), ("spawned-0",), ("spawned-1",)]
    # Three processes, three instances.
    assert len({s.resource["service.instance.id"] for s in http_receiver.spans()}) == 3


def test_a_fork_while_an_export_hangs_gives_the_child_its_own_threads():
    # The parent's exporter is stuck in an export (the collector holds it) when the process forks:
    # its threads and the locks they hold exist in the child only as copies. The child records
    # through threads of its own and exits within its shutdown timeout.
    with HttpReceiver() as held:
        held.hold()
        script = """
            import json
            from opentelemetry.instrumentation.vllm import VllmInstrumentor

            def threads():
                names = []
                for task in os.listdir("/proc/self/task"):
                    with open(f"/proc/self/task/{task}/comm") as comm:
                        names.append(comm.read().strip())
                return sorted(names)

            VllmInstrumentor().instrument(skip_dep_check=True, shutdown_timeout_ms=300)
            assert _core.record_requests(batch_header(request_model="parent"), [request_record()]) == 1
            assert _core.force_flush(0.3) is False  # the export is in flight, held by the collector
            pid = os.fork()
            if pid == 0:
                alone = threads()
                ok = _core.record_requests(batch_header(request_model="child"), [request_record()]) == 1
                stats = _core.stats()  # answered by the child's own recorder thread
                print("child", json.dumps({"alone": alone, "after": threads(), **stats}), flush=True)
                sys.exit(0 if ok else 1)  # exit-time shutdown: bounded by shutdown_timeout_ms
            _, status = os.waitpid(pid, 0)
            print("child exit", os.waitstatus_to_exitcode(status), flush=True)
        """
        result = run_python(script, child_environment(held, OTEL_EXPORTER_OTLP_TIMEOUT="30000"), timeout=30)
        assert held.requests_to("/v1/traces"), "the parent's export was in flight"
    assert result.returncode == 0, result.stderr
    assert "child exit 0" in result.stdout, result.stdout + result.stderr
    (line,) = [x for x in result.stdout.splitlines() if x.startswith("child {")]
    child = json.loads(line.removeprefix("child "))
    assert len(child["alone"]) == 1, child["alone"]  # none of the parent's threads came along
    assert "otel-vllm-recor" in child["after"]  # thread names are cut to 15 characters
    assert child["requests_recorded"] == 1  # the child's pipeline, not the parent's
