"""Reproduces vllm 0.11.0's pooling_params.py: PoolingParams."""

from fake_vllm.shapes import PoolingParams

__all__ = ["PoolingParams"]
