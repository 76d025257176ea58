"""Reproduces what the serving instrumentation reads of vllm 0.32's v1/engine/__init__.py."""


class EngineCoreOutput:
    """A msgspec Struct in vLLM: only its field names are read (``__struct_fields__``). vLLM 0.33
    added ``error``; tests of 0.33's failed-request path add it (``ERROR_FIELD``)."""

    __struct_fields__ = ("request_id", "new_token_ids", "finish_reason", "stop_reason", "events")


# The field 0.33 added (RequestError | None), which makes process_outputs fail requests itself.
ERROR_FIELD = "error"
