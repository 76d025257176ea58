"""Reproduces vllm 0.11.0's engine/llm_engine.py: since 0.11 only an alias of the V1 engine class."""

from vllm.v1.engine.llm_engine import LLMEngine as V1LLMEngine

LLMEngine = V1LLMEngine
