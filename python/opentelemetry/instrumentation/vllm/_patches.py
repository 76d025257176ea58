"""The class-level patches one instrumentation applied, so that uninstrument removes exactly those."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import wrapt
from opentelemetry.instrumentation.utils import unwrap

_REPLACED = "_otel_vllm_replacement"


class ClassPatches:
    def __init__(self) -> None:
        self._applied: list[tuple[type, str]] = []

    def wrap(self, owner: type | None, name: str, wrapper: Any) -> None:
        """Wraps ``owner.name`` once; ``owner`` None (not found in this vLLM) is skipped."""
        if owner is None or (owner, name) in self._applied:
            return
        if isinstance(vars(owner).get(name), wrapt.FunctionWrapper):
            return  # already wrapped by us (e.g. two module aliases of one class)
        wrapt.wrap_function_wrapper(owner, name, wrapper)
        self._applied.append((owner, name))

    def replace(self, owner: type | None, name: str, make: Callable[[Callable[..., Any]], Callable[..., Any]]) -> None:
        """Replaces ``owner.name`` with the plain function ``make(original)`` (``__wrapped__`` set, so
        ``unwrap`` restores the original). For methods vLLM calls for every request, where wrapt's
        bound-wrapper machinery costs more than the instrumentation's own work (see callers)."""
        if owner is None or (owner, name) in self._applied:
            return
        original = vars(owner).get(name)
        if original is None or getattr(original, _REPLACED, False) or isinstance(original, wrapt.FunctionWrapper):
            return  # not a plain attribute of this class, or already patched by us
        replacement = functools.wraps(original)(make(original))
        setattr(replacement, _REPLACED, True)
        setattr(owner, name, replacement)
        self._applied.append((owner, name))

    def replace_or_wrap(
        self,
        owner: type | None,
        name: str,
        generate: Callable[[Callable[..., Any]], Callable[..., Any] | None],
        wrapper: Any,
    ) -> None:
        """``replace`` with ``generate(original)`` where that makes a function (see _forwarding.py),
        else ``wrap`` with the generic ``wrapper``."""
        if owner is None or (owner, name) in self._applied:
            return
        original = vars(owner).get(name)
        if getattr(original, _REPLACED, False):
            return  # already patched by us (e.g. two module aliases of one class)
        generated = generate(original) if original is not None else None
        if generated is not None:
            self.replace(owner, name, lambda _: generated)
        else:
            self.wrap(owner, name, wrapper)

    def remove_all(self) -> None:
        """Restores every wrapped attribute, the last applied first."""
        for owner, name in reversed(self._applied):
            current = vars(owner).get(name)
            if current is not None and getattr(current, _REPLACED, False):
                setattr(owner, name, current.__wrapped__)
            else:
                unwrap(owner, name)
        self._applied.clear()
