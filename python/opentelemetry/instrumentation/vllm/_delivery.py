"""Decides, per signal, whether the core exports natively or delivers through Python SDK providers.

Precedence (first match wins), the table README.rst shows:

1. ``instrument(delivery="native"|"bridge")``
2. ``OTEL_INSTRUMENTATION_VLLM_DELIVERY=native|bridge``
3. ``tracer_provider`` / ``meter_provider`` passed to ``instrument()``: bridge for that signal
4. ``OTEL_<SIGNAL>_EXPORTER`` or an ``OTEL_EXPORTER_OTLP_*`` variable for that signal set
   (environment or the matching ``instrument()`` argument): native
5. the global provider is an opentelemetry-sdk provider the application configured in code: bridge
6. otherwise: native (OTLP, the spec default)
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

_logger = logging.getLogger("opentelemetry.instrumentation.vllm")

DELIVERY_ARGUMENT = "delivery"
DELIVERY_VARIABLE = "OTEL_INSTRUMENTATION_VLLM_DELIVERY"
NATIVE = "native"
BRIDGE = "bridge"
SIGNALS = ("traces", "metrics")
PROVIDER_ARGUMENT = {"traces": "tracer_provider", "metrics": "meter_provider"}


@dataclass(frozen=True)
class Inputs:
    """What the decision for one signal depends on."""

    mode_argument: str | None = None
    mode_variable: str | None = None
    provider_argument: bool = False
    exporter_configured: bool = False
    global_sdk_provider: bool = False


@dataclass(frozen=True)
class Decision:
    mode: str
    reason: str


def _mode(value: Any, source: str) -> str | None:
    text = str(value).strip().lower() if value is not None else ""
    if text in ("", "auto"):
        return None
    if text in (NATIVE, BRIDGE):
        return text
    _logger.warning("invalid value %r for %s; expected native, bridge or auto", value, source)
    return None


def decide(inputs: Inputs) -> Decision:
    """The precedence table, in one place."""
    mode = _mode(inputs.mode_argument, "instrument(delivery=...)")
    if mode:
        return Decision(mode, "delivery argument")
    mode = _mode(inputs.mode_variable, DELIVERY_VARIABLE)
    if mode:
        return Decision(mode, DELIVERY_VARIABLE)
    if inputs.provider_argument:
        return Decision(BRIDGE, "provider argument")
    if inputs.exporter_configured:
        return Decision(NATIVE, "exporter variables")
    if inputs.global_sdk_provider:
        return Decision(BRIDGE, "SDK provider configured in code")
    return Decision(NATIVE, "default")


def exporter_configured(signal: str, variables: Mapping[str, str]) -> bool:
    """Whether ``variables`` (argument overrides merged over the environment) choose an exporter
    or configure OTLP for ``signal``; empty values count as unset, as everywhere in OTel."""
    upper = signal.upper()
    others = [f"_{s.upper()}_" for s in (*SIGNALS, "logs") if s != signal]
    for name, value in variables.items():
        if not str(value).strip():
            continue
        if name == f"OTEL_{upper}_EXPORTER":
            return True
        if name.startswith("OTEL_EXPORTER_OTLP_") and not any(o in name + "_" for o in others):
            return True
    return False


def global_sdk_provider(signal: str) -> bool:
    """Whether the global provider of ``signal`` is an opentelemetry-sdk one (set in code or by a
    configurator), not the API's proxy or no-op default.

    An SDK provider exists only if the application imported the SDK, so the SDK is not imported
    here: that would cost a process that never uses it about 18 ms and 4 000 objects, which every
    full garbage collection then visits (measured on the fake-engine benchmark)."""
    from opentelemetry import metrics, trace

    if signal == "traces":
        provider_class = getattr(sys.modules.get("opentelemetry.sdk.trace"), "TracerProvider", None)
        return provider_class is not None and isinstance(trace.get_tracer_provider(), provider_class)
    provider_class = getattr(sys.modules.get("opentelemetry.sdk.metrics"), "MeterProvider", None)
    return provider_class is not None and isinstance(metrics.get_meter_provider(), provider_class)


def plan(arguments: Mapping[str, Any], overrides: Mapping[str, str], environ: Mapping[str, str]) -> dict[str, Decision]:
    """The decision of each signal for an ``instrument(**arguments)`` call."""
    variables = {**environ, **overrides}
    return {
        signal: decide(
            Inputs(
                mode_argument=arguments.get(DELIVERY_ARGUMENT),
                mode_variable=environ.get(DELIVERY_VARIABLE),
                provider_argument=arguments.get(PROVIDER_ARGUMENT[signal]) is not None,
                exporter_configured=exporter_configured(signal, variables),
                global_sdk_provider=global_sdk_provider(signal),
            )
        )
        for signal in SIGNALS
    }
