"""Reproduces vllm 0.32's lora/request.py: LoRARequest."""

from fake_vllm.shapes import LoRARequest

__all__ = ["LoRARequest"]
