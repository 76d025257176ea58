"""The drift tier's checker (tests/drift/check_vllm_drift.py) on the fake vLLM 0.32 tree: it finds each
hook point and field as the tree has them, and fails naming the hook or field once vLLM removes or
renames one, so that the tier cannot pass by checking nothing."""

from __future__ import annotations

import dataclasses
import importlib
import importlib.util
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.instrumentation.vllm import VllmInstrumentor, _vllm

_CHECKER = Path(__file__).parent / "drift" / "check_vllm_drift.py"
LABEL = "fake-0.32"


def _load_checker() -> Any:
    spec = importlib.util.spec_from_file_location("check_vllm_drift", _CHECKER)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses and NamedTuple look their module up
    spec.loader.exec_module(module)
    return module


drift = _load_checker()


def run_checker(instrument: Callable[..., VllmInstrumentor]) -> dict[str, list[str]]:
    """The checker's lines by subject (the hook or field they name)."""
    results = drift.results_of(LABEL, lambda: instrument(), lambda: VllmInstrumentor()._serving)
    lines: dict[str, list[str]] = {}
    for result in results:
        lines.setdefault(result.subject, []).append(str(result))
    return lines


def statuses(lines: dict[str, list[str]], subject: str) -> set[str]:
    return {line.split(" ", 1)[0] for line in lines.get(subject, [])}


def test_hooks_and_fields_as_the_tree_has_them(instrument: Callable[..., VllmInstrumentor]) -> None:
    lines = run_checker(instrument)
    for subject in (
        "LLM.generate",
        "LLM.chat",
        "LLMEngine.add_request",
        "LLMEngine.step",
        "RequestStateStats.first_token_ts",
        "RequestOutput.metrics",
        "CompletionOutput.token_ids",
    ):
        assert statuses(lines, subject) == {"ok"}, lines.get(subject)
    assert any("patched (generated)" in line for line in lines["LLMEngine.step"])
    # Hooks declared for versions this is not, absent here, are not failures.
    assert statuses(lines, "OpenAIServing._get_trace_headers") == {"ok"}


@pytest.mark.parametrize(
    ("module", "owner", "method"),
    [
        ("vllm.v1.engine.llm_engine", "LLMEngine", "step"),
        ("vllm.entrypoints.llm", "LLM", "generate"),
        ("vllm.entrypoints.llm", "LLM", "embed"),  # defined on a mixin
    ],
)
def test_a_removed_method_fails_naming_the_hook(
    instrument: Callable[..., VllmInstrumentor], monkeypatch: pytest.MonkeyPatch, module: str, owner: str, method: str
) -> None:
    cls = getattr(importlib.import_module(module), owner)
    monkeypatch.delattr(_vllm.defining_class(cls, method), method)
    lines = run_checker(instrument)
    hook = f"{owner}.{method}"
    assert statuses(lines, hook) == {"FAIL"}
    (line,) = lines[hook]
    assert line.startswith(f"FAIL {LABEL} {hook}: absent from {module}")
    assert statuses(lines, "LLM.chat") == {"ok"}


def test_add_request_is_patched_only_with_step(
    instrument: Callable[..., VllmInstrumentor], monkeypatch: pytest.MonkeyPatch
) -> None:
    # The shim patches add_request only together with step (requests added are finished there): the
    # checker says add_request is not patched rather than passing it.
    monkeypatch.delattr(importlib.import_module("vllm.v1.engine.llm_engine").LLMEngine, "step")
    lines = run_checker(instrument)
    assert statuses(lines, "LLMEngine.add_request") == {"FAIL"}
    assert all("not patched after importing" in line for line in lines["LLMEngine.add_request"])


def test_a_renamed_parameter_fails_naming_the_hook_and_parameter(
    instrument: Callable[..., VllmInstrumentor], monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = importlib.import_module("vllm.v1.engine.llm_engine").LLMEngine
    add_request = engine.add_request

    def renamed(self, req_id, prompt, params, arrival_time=None, lora_request=None, priority=0, prompt_text=None):  # noqa: ANN001, ANN202
        return add_request(self, req_id, prompt, params, arrival_time, lora_request, priority=priority)

    monkeypatch.setattr(engine, "add_request", renamed)
    lines = run_checker(instrument)
    assert statuses(lines, "LLMEngine.add_request") == {"FAIL"}
    assert all("signature lacks request_id" in line for line in lines["LLMEngine.add_request"])


def _stats_class_with(field_name: str, renamed_to: str, annotation: str) -> type:
    """A RequestStateStats like the tree's, with one field renamed and annotated ``annotation``."""
    original = importlib.import_module("vllm.v1.metrics.stats").RequestStateStats
    fields = [
        (renamed_to, annotation, dataclasses.field(default=f.default))
        if f.name == field_name
        else (f.name, f.type, dataclasses.field(default=f.default))
        for f in dataclasses.fields(original)
    ]
    return dataclasses.make_dataclass("RequestStateStats", fields)


def test_a_renamed_field_fails_naming_the_field(
    instrument: Callable[..., VllmInstrumentor], monkeypatch: pytest.MonkeyPatch
) -> None:
    stats = importlib.import_module("vllm.v1.metrics.stats")
    monkeypatch.setattr(stats, "RequestStateStats", _stats_class_with("first_token_ts", "first_token_time", "float"))
    lines = run_checker(instrument)
    assert statuses(lines, "RequestStateStats.first_token_ts") == {"FAIL"}
    (line,) = lines["RequestStateStats.first_token_ts"]
    assert line.startswith(f"FAIL {LABEL} RequestStateStats.first_token_ts: not on ")
    assert statuses(lines, "RequestStateStats.last_token_ts") == {"ok"}


def test_a_field_of_another_type_fails_naming_the_field_and_the_type(
    instrument: Callable[..., VllmInstrumentor], monkeypatch: pytest.MonkeyPatch
) -> None:
    stats = importlib.import_module("vllm.v1.metrics.stats")
    monkeypatch.setattr(stats, "RequestStateStats", _stats_class_with("queued_ts", "queued_ts", "int"))
    lines = run_checker(instrument)
    (line,) = lines["RequestStateStats.queued_ts"]
    assert line.startswith(f"FAIL {LABEL} RequestStateStats.queued_ts: queued_ts (dataclass field: int)")
    assert line.endswith("the readers take float")


@pytest.mark.parametrize(
    ("versions", "optional", "version", "expected"),
    [
        ("all", False, (0, 34, 0), True),
        ("all (where LLM has it)", True, (0, 34, 0), False),
        ("0.32+ (vLLM's enqueue API)", True, (0, 34, 0), True),
        ("0.33+ (present in 0.32)", True, (0, 32, 0), False),
        ("0.11 - 0.31", True, (0, 31, 2), True),
        ("0.11 - 0.31", True, (0, 32, 0), False),
        ("0.11 - 0.31", True, (0, 10, 2), False),
        ("0.11.1+", False, (0, 11, 0), False),
        ("0.11.1+", False, (0, 11, 1), True),
    ],
)
def test_which_hook_points_a_version_must_have(
    versions: str, optional: bool, version: tuple[int, ...], expected: bool
) -> None:
    assert drift.expected_in(versions, optional, version) is expected


def test_version_numbers() -> None:
    assert drift.version_tuple("0.32.0+cpu") == (0, 32, 0)
    assert drift.version_tuple("0.11.1.post2") == (0, 11, 1)
    assert drift.version_tuple("0.34.0") == (0, 34, 0)
