"""The caller's current span context, in the form the core takes as a parent."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from opentelemetry import trace
from opentelemetry.context import get_current

if TYPE_CHECKING:
    from opentelemetry.instrumentation.vllm._core import ParentContext

# The last context read and the parent it holds. A Context is immutable (setting a value makes a new
# one), so the same object holds the same span: an application that calls the LLM again and again
# in one context (no span of its own, or the same one) resolves its parent once, not per call. The
# context is kept until the next call reads another.
_last_resolved: tuple[Any, ParentContext | None] = (object(), None)


def current_parent() -> ParentContext | None:
    global _last_resolved
    current = get_current()
    context, parent = _last_resolved
    if current is context:
        return parent
    span_context = trace.get_current_span(current).get_span_context()
    if span_context.is_valid:
        parent = (span_context.trace_id, span_context.span_id, int(span_context.trace_flags), span_context.is_remote)
    else:
        parent = None
    _last_resolved = (current, parent)
    return parent
