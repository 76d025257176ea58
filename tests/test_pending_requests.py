"""The core's store of the requests it will read (``_core.PendingRequests``), on its own: what it
keeps, what it leaves to the shim, and what it gives back. End to end it runs in every offline test
(tests/test_offline_fake.py); here its contract with the shim is checked call by call, with plain
Python objects for the shim's side (the callables the shim passes in)."""

from __future__ import annotations

from typing import Any

import pytest
from opentelemetry.instrumentation.vllm import _core

T0 = 1_700_000_000_000_000_000
SAMPLING_FIELDS = ("temperature", "stop")
LORA_FIELDS = ("lora_name",)


@pytest.fixture(autouse=True)
def _no_current_operation():
    """Each test makes its operation current on this thread (as the core's begin does); none after."""
    yield
    _core.set_current_operation(None)


class Shim:
    """The shim's side: its own registration, a clock, attributes."""

    def __init__(self) -> None:
        self.registered_otherwise: list[tuple] = []
        self.attribute_reads: list[Any] = []
        self.clock = 1_700_000_000_000_000_000
        self.attribute_error: BaseException | None = None

    def register_otherwise(self, *arguments: Any) -> None:
        self.registered_otherwise.append(arguments)

    def now_ns(self) -> int:
        self.clock += 1000
        return self.clock

    def request_attributes(self, params: Any, lora_request: Any, priority: Any) -> dict[str, Any]:
        self.attribute_reads.append(params)
        if self.attribute_error is not None:
            raise self.attribute_error
        return {"gen_ai.request.temperature": params["temperature"], "vllm.request.priority": priority}

    def store(self) -> Any:
        return _core.PendingRequests(
            self.register_otherwise,
            self.now_ns,
            self.request_attributes,
            SAMPLING_FIELDS,
            LORA_FIELDS,
        )


def core_operation(core_reads: bool = True) -> Any:
    """An operation whose outputs the core reads (or not), as the shim makes one per LLM call."""
    return _core.Operation("text_completion", "vllm", "m", None, True, core_reads, T0)


def test_a_request_outside_a_core_operation_is_the_shims_with_every_argument():
    shim = Shim()
    store = shim.store()
    engine, params = object(), {"temperature": 0.5}
    store.register(engine, "7", "prompt", params, None, 0, "text")
    assert shim.registered_otherwise == [(engine, "7", "prompt", params, None, 0, "text")]
    assert len(store) == 0


def test_requests_of_a_core_operation_are_kept_and_given_back_in_the_shims_layout():
    shim = Shim()
    store = shim.store()
    core = core_operation()
    _core.set_current_operation(core)
    engine, params = object(), {"temperature": 0.5}
    store.register(engine, "7", "p", params, None, 0, None)
    store.register(engine, 8, "p", params, None, 0, None)  # str(request_id), as the shim keys them
    assert shim.registered_otherwise == []
    assert len(store) == 2
    assert shim.attribute_reads == [params]  # one parameters object: its attributes are read once
    pending: dict = {}
    assert store.release(core, pending) == 2  # the operation's request count
    attributes = {"gen_ai.request.temperature": 0.5, "vllm.request.priority": 0}
    assert pending == {
        (id(engine), "7"): (shim.clock - 1000, attributes, core, "text_completion", None, None),
        (id(engine), "8"): (shim.clock, attributes, core, "text_completion", None, None),
    }
    assert len(store) == 0
    assert store.release(core, {}) == 2  # nothing left to give back; the count stays


def test_parameters_are_read_again_when_another_object_is_given():
    shim = Shim()
    store = shim.store()
    core = core_operation()
    _core.set_current_operation(core)
    first, second = {"temperature": 0.5}, {"temperature": 0.5}
    engine = object()
    for request_id, params, priority in (("1", first, 0), ("2", first, 0), ("3", second, 0), ("4", second, 2)):
        store.register(engine, request_id, "p", params, None, priority, None)
    assert shim.attribute_reads == [first, second, second]  # a new object, then a new priority
    pending: dict = {}
    store.release(core, pending)
    assert pending[(id(engine), "4")][1] == {"gen_ai.request.temperature": 0.5, "vllm.request.priority": 2}


def test_a_request_the_core_cannot_register_is_the_shims_and_an_interrupt_is_the_applications():
    shim = Shim()
    store = shim.store()
    _core.set_current_operation(core_operation())
    engine, params = object(), {"temperature": 0.5}
    shim.attribute_error = ValueError("a parameters object nobody expected")
    store.register(engine, "1", "p", params, None, 0, None)
    assert shim.registered_otherwise == [(engine, "1", "p", params, None, 0, None)]
    shim.attribute_error = KeyboardInterrupt()
    with pytest.raises(KeyboardInterrupt):
        store.register(engine, "2", "p", params, None, 0, None)
    assert len(shim.registered_otherwise) == 1
    assert len(store) == 0


def test_after_deactivate_everything_is_the_shims_and_nothing_is_kept():
    shim = Shim()
    store = shim.store()
    _core.set_current_operation(core_operation())
    engine = object()
    store.register(engine, "1", "p", {"temperature": 0.5}, None, 0, None)
    assert len(store) == 1
    store.deactivate()
    assert len(store) == 0
    store.register(engine, "2", "p", {"temperature": 0.5}, None, 0, None)
    assert [arguments[1] for arguments in shim.registered_otherwise] == ["2"]
    assert len(store) == 0


def test_the_same_id_again_on_one_engine_replaces_the_request_as_a_dict_would():
    shim = Shim()
    store = shim.store()
    core = core_operation()
    _core.set_current_operation(core)
    one, other = object(), object()
    store.register(one, "1", "p", {"temperature": 0.5}, None, 0, None)
    store.register(one, "1", "p", {"temperature": 0.25}, None, 0, None)
    store.register(other, "1", "p", {"temperature": 0.5}, None, 0, None)  # another engine's "1"
    assert len(store) == 2
    pending: dict = {}
    assert store.release(core, pending) == 3
    assert pending[(id(one), "1")][1]["gen_ai.request.temperature"] == 0.25
    assert set(pending) == {(id(one), "1"), (id(other), "1")}


class Params:
    """Sampling parameters with every field the store is told the shim reads (a dict has none)."""

    def __init__(self, temperature: Any = 0.5, stop: Any = None) -> None:
        self.temperature = temperature
        self.stop = [] if stop is None else stop

    def __getitem__(self, name: str) -> Any:  # the Shim's request_attributes reads params[...]
        return getattr(self, name)


class Lora:
    def __init__(self, lora_name: str) -> None:
        self.lora_name = lora_name


def registered_attributes(shim: Shim, store: Any, params: Any, lora_request: Any = None, priority: Any = 0) -> Any:
    """Registers one request in a new operation (one LLM call of one prompt); its attribute dict."""
    operation = core_operation()
    _core.set_current_operation(operation)
    engine = object()
    store.register(engine, "1", "p", params, lora_request, priority, None)
    pending: dict = {}
    store.release(operation, pending)
    return pending[(id(engine), "1")][1]


def test_attributes_are_reused_across_calls_only_while_every_value_read_is_the_same_object():
    shim = Shim()
    store = shim.store()
    params = Params()
    first = registered_attributes(shim, store, params)
    assert registered_attributes(shim, store, params) is first  # the same values: not read again
    assert registered_attributes(shim, store, Params()) is first  # another object, the same values
    assert shim.attribute_reads == [params]

    params.temperature = 0.25  # changed between calls
    changed = registered_attributes(shim, store, params)
    assert changed["gen_ai.request.temperature"] == 0.25
    params.stop.append("END")  # a list changed in place
    registered_attributes(shim, store, params)
    registered_attributes(shim, store, params, priority=2)  # another priority
    lora = Lora("adapter")
    registered_attributes(shim, store, params, lora_request=lora)
    registered_attributes(shim, store, params, lora_request=lora)  # the same LoRA request, same name
    lora.lora_name = "other"
    registered_attributes(shim, store, params, lora_request=lora)
    assert len(shim.attribute_reads) == 6


def test_parameters_without_every_field_are_read_for_every_call():
    shim = Shim()
    store = shim.store()
    params = {"temperature": 0.5}  # no attribute at all: nothing to compare, nothing kept
    for _ in range(3):
        assert registered_attributes(shim, store, params) == {
            "gen_ai.request.temperature": 0.5,
            "vllm.request.priority": 0,
        }
    assert shim.attribute_reads == [params] * 3
