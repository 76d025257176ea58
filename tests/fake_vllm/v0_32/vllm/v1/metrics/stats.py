"""Reproduces vllm 0.32's v1/metrics/stats.py: RequestStateStats (0.11.0 never attaches one to an output)."""

from fake_vllm.shapes import RequestStateStats

__all__ = ["RequestStateStats"]
