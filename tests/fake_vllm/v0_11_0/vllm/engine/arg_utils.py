"""Reproduces vllm 0.11.0's engine/arg_utils.py: EngineArgs."""

from fake_vllm.shapes import EngineArgs

__all__ = ["EngineArgs"]
