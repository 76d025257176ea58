"""Reproduces vllm 0.32's beam_search.py: BeamSearchSequence, BeamSearchOutput."""

from fake_vllm.shapes import BeamSearchOutput, BeamSearchSequence

__all__ = ["BeamSearchOutput", "BeamSearchSequence"]
