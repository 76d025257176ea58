"""Reproduces vllm 0.32's __init__.py: lazy exports (MODULE_ATTRS and a module __getattr__), so that
``import vllm`` imports neither vllm.entrypoints.llm nor the engine until a name is used."""

from __future__ import annotations

from importlib import import_module
from typing import Any

__version__ = "0.32.0"

MODULE_ATTRS = {
    "LLM": ".entrypoints.llm:LLM",
    "LLMEngine": ".engine.llm_engine:LLMEngine",
    "SamplingParams": ".sampling_params:SamplingParams",
    "BeamSearchParams": ".sampling_params:BeamSearchParams",
    "PoolingParams": ".pooling_params:PoolingParams",
    "RequestOutput": ".outputs:RequestOutput",
    "CompletionOutput": ".outputs:CompletionOutput",
    "PoolingRequestOutput": ".outputs:PoolingRequestOutput",
}


def __getattr__(name: str) -> Any:
    if name in MODULE_ATTRS:
        module_name, attribute = MODULE_ATTRS[name].split(":")
        return getattr(import_module(module_name, __package__), attribute)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
