"""The caller's current span context, in the form the core takes as a parent."""

from __future__ import annotations

from typing import TYPE_CHECKING

from opentelemetry import trace

if TYPE_CHECKING:
    from opentelemetry.instrumentation.vllm._core import ParentContext


def current_parent() -> ParentContext | None:
    context = trace.get_current_span().get_span_context()
    if not context.is_valid:
        return None
    return (context.trace_id, context.span_id, int(context.trace_flags), context.is_remote)
