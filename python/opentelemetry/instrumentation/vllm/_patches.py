"""The class-level patches one instrumentation applied, so that uninstrument removes exactly those."""

from __future__ import annotations

from typing import Any

import wrapt
from opentelemetry.instrumentation.utils import unwrap


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

    def remove_all(self) -> None:
        """Restores every wrapped attribute, the last applied first."""
        for owner, name in reversed(self._applied):
            unwrap(owner, name)
        self._applied.clear()
