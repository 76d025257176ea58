"""The benchmarks' in-situ profile attribution (benchmarks/in_situ.py): which py-spy samples count as the
instrumentation's. A sample at a line of a generated forwarding function that calls vLLM's own method is
vLLM's (the freeing of what that method made), one at the line that reports to the core is ours.

The py-spy output here is written by the test, in py-spy's ``--format raw --threads`` layout, for the
lines that the instrumented fake vLLM's functions really have: py-spy cannot sample this process."""

from __future__ import annotations

import dis

from opentelemetry.instrumentation.vllm._forwarding import GENERATED_FILE, ORIGINAL_NAME, callback_global


def _in_situ():
    import in_situ  # benchmarks/ is on sys.path (conftest.py)

    return in_situ


def _line_loading(function, name: str) -> int:
    return next(
        i.positions.lineno if hasattr(i, "positions") else i.starts_line
        for i in dis.get_instructions(function.__code__)
        if i.argval == name
    )


def test_samples_at_the_call_of_vllm_own_method_are_not_the_instrumentation_s(instrument):
    in_situ = _in_situ()
    instrument()
    from vllm.v1.engine.llm_engine import LLMEngine

    step = LLMEngine.step
    file = step.__code__.co_filename
    calls_original = _line_loading(step, ORIGINAL_NAME)
    reports = _line_loading(step, callback_global("report"))
    assert calls_original != reports

    not_ours = frozenset(in_situ.lines_calling_originals())
    assert f"{file}:{calls_original}" in not_ours
    assert f"{file}:{reports}" not in not_ours
    assert all(line.startswith(GENERATED_FILE) for line in not_ours)

    caller = "_run_engine (/venv/lib/python3.11/site-packages/vllm/entrypoints/llm.py:1700)"
    vllm_step = "step (/venv/lib/python3.11/site-packages/vllm/v1/engine/llm_engine.py:290)"
    queue_get = "get (/usr/lib/python3.11/queue.py:180)"  # the standard library counts to its caller
    raw = "\n".join(
        [
            f"thread (0x1) MainThread;{caller};step ({file}:{calls_original}) 7",
            f"thread (0x1) MainThread;{caller};step ({file}:{reports}) 5",
            f"thread (0x1) MainThread;{caller};step ({file}:{reports});{queue_get} 2",
            f"thread (0x1) MainThread;{caller};step ({file}:{calls_original});{vllm_step} 11",
            f"thread (0x2) worker;{caller};step ({file}:{reports}) 100",  # not the calling thread
        ]
    )
    counted = in_situ.attribute_samples(raw, 1, not_ours)
    assert counted["main_samples"] == 25
    assert counted["our_samples"] == 7
    assert counted["at_original_calls"] == 7
    assert counted["functions"] == [("step", 7)]

    without_lines = in_situ.attribute_samples(raw, 1)
    assert (without_lines["our_samples"], without_lines["at_original_calls"]) == (14, 0)
