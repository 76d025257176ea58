"""Reproduces vllm 0.11.0's v1/engine/exceptions.py."""

from fake_vllm.shapes import EngineDeadError, EngineGenerateError

__all__ = ["EngineDeadError", "EngineGenerateError"]
