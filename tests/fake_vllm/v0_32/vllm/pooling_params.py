"""Reproduces vllm 0.32's pooling_params.py: PoolingParams."""

from fake_vllm.shapes import PoolingParams

__all__ = ["PoolingParams"]
