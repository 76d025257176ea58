"""Reproduces vllm 0.32's sampling_params.py: SamplingParams, BeamSearchParams, RequestOutputKind."""

from fake_vllm.shapes import BeamSearchParams, RequestOutputKind, SamplingParams

__all__ = ["BeamSearchParams", "RequestOutputKind", "SamplingParams"]
