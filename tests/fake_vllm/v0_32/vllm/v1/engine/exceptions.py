"""Reproduces vllm 0.32's v1/engine/exceptions.py."""

from fake_vllm.shapes import EngineDeadError, EngineGenerateError

__all__ = ["EngineDeadError", "EngineGenerateError"]
