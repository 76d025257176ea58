"""The one builder of the core's request record (``_core.RequestRecord``), in the layout
``_core.record_requests`` reads by position.

Plain positional functions that return a tuple display: the shim builds a record for each finished
request it reads itself (content capture, an output of an unusual shape, an unfinished request), so a
keyword call, a NamedTuple's Python ``__new__`` or a tuple concatenation would add work per request
for nothing the core reads (it takes a plain tuple, by position).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from opentelemetry.instrumentation.vllm._core import (
        Attributes,
        ParentContext,
        RequestRecord,
        RequestRecordWithParent,
    )


def request_record(
    response_id: str | None,
    span_id: int | None,
    start_ns: int,
    end_ns: int,
    input_tokens: int | None,
    output_tokens: int | None,
    cached_input_tokens: int | None,
    finish_reasons: Sequence[str] | None,
    error_type: str | None,
    time_to_first_token: float | None,
    time_per_output_token: float | None,
    queue: float | None,
    prefill: float | None,
    decode: float | None,
    inference: float | None,
    e2e: float | None,
    attributes: Attributes,
) -> RequestRecord:
    """One finished request, for a batch whose header holds the parent of every request in it."""
    return (
        response_id,
        span_id,
        start_ns,
        end_ns,
        input_tokens,
        output_tokens,
        cached_input_tokens,
        finish_reasons,
        error_type,
        time_to_first_token,
        time_per_output_token,
        queue,
        prefill,
        decode,
        inference,
        e2e,
        attributes,
    )


def request_record_with_parent(
    response_id: str | None,
    span_id: int | None,
    start_ns: int,
    end_ns: int,
    input_tokens: int | None,
    output_tokens: int | None,
    cached_input_tokens: int | None,
    finish_reasons: Sequence[str] | None,
    error_type: str | None,
    time_to_first_token: float | None,
    time_per_output_token: float | None,
    queue: float | None,
    prefill: float | None,
    decode: float | None,
    inference: float | None,
    e2e: float | None,
    attributes: Attributes,
    parent: ParentContext | None,
    trace_id: int | None,
) -> RequestRecordWithParent:
    """``request_record`` and two more fields, for a request with its own parent (serving): the parent
    (None: a root span) and the trace id ``new_span_context`` returned with ``span_id`` (a root span's),
    ``_core.REQUEST_RECORD_WITH_PARENT_LEN`` fields in all."""
    return (
        response_id,
        span_id,
        start_ns,
        end_ns,
        input_tokens,
        output_tokens,
        cached_input_tokens,
        finish_reasons,
        error_type,
        time_to_first_token,
        time_per_output_token,
        queue,
        prefill,
        decode,
        inference,
        e2e,
        attributes,
        parent,
        trace_id,
    )
