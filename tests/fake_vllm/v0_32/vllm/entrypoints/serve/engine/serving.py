"""Reproduces vllm 0.32's entrypoints/serve/engine/serving.py: BaseServing._get_trace_headers (the
W3C headers of an incoming request, or None)."""

from __future__ import annotations

from collections.abc import Mapping

TRACE_HEADERS = ("traceparent", "tracestate")


class BaseServing:
    async def _get_trace_headers(self, headers: Mapping[str, str]) -> Mapping[str, str] | None:
        if not any(h in headers for h in TRACE_HEADERS):
            return None
        return {h: headers[h] for h in TRACE_HEADERS if h in headers}
