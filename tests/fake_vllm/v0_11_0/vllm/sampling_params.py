"""Reproduces vllm 0.11.0's sampling_params.py: SamplingParams, BeamSearchParams, RequestOutputKind."""

from fake_vllm.shapes import BeamSearchParams, RequestOutputKind, SamplingParams

__all__ = ["BeamSearchParams", "RequestOutputKind", "SamplingParams"]
