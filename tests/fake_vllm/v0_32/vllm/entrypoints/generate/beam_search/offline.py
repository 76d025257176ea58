"""Reproduces vllm 0.32's entrypoints/generate/beam_search/offline.py: BeamSearchOfflineMixin.

One one-token round per step: every beam becomes a request added through _add_request and run by
_run_engine (via _render_and_run_requests); beam_search does NOT call generate. The engine requests
are internal (one per beam and step), not the user's requests.
"""

from __future__ import annotations

from typing import Any

from fake_vllm.engine_core import as_list, detokenize, prompt_text_and_ids

from vllm.beam_search import BeamSearchOutput, BeamSearchSequence
from vllm.sampling_params import BeamSearchParams, SamplingParams


class BeamSearchOfflineMixin:
    def beam_search(
        self,
        prompts: Any,
        params: BeamSearchParams,
        lora_request: Any = None,
        use_tqdm: bool = False,
        concurrency_limit: int | None = None,
    ) -> list[BeamSearchOutput]:
        starts = [prompt_text_and_ids(p)[1] for p in as_list(prompts)]
        beams = [[BeamSearchSequence(tokens=list(ids))] for ids in starts]
        one_token = SamplingParams(
            max_tokens=1, temperature=params.temperature, logprobs=2 * params.beam_width, ignore_eos=True
        )
        for _ in range(params.max_tokens):
            flat = [beam for group in beams for beam in group]
            outputs = self._render_and_run_requests(
                [{"prompt_token_ids": beam.tokens} for beam in flat], one_token, lora_request, use_tqdm=False
            )
            candidates: dict[int, list[BeamSearchSequence]] = {}
            for beam, output in zip(flat, outputs, strict=True):
                group = next(i for i, g in enumerate(beams) if any(b is beam for b in g))
                token = output.outputs[0].token_ids[0]
                # The fake's stand-in for the top-k logprobs: the token and its neighbours.
                for k in range(params.beam_width):
                    candidates.setdefault(group, []).append(
                        BeamSearchSequence([*beam.tokens, token + k], beam.cum_logprob - 0.5 * (k + 1))
                    )
            beams = [
                sorted(candidates[i], key=lambda b: -b.cum_logprob)[: params.beam_width] for i in range(len(beams))
            ]
        for start, group in zip(starts, beams, strict=True):
            for beam in group:
                beam.text = detokenize(beam.tokens[len(start) :])
        return [BeamSearchOutput(sequences=group) for group in beams]
