"""Reproduces vllm 0.11.0's entrypoints/llm.py: every method defined on ``LLM`` itself.

The call paths the instrumentation depends on:
- generate / encode -> _validate_and_add_requests -> _add_request -> llm_engine.add_request(request_id,
  prompt, params, lora_request=..., tokenization_kwargs=..., priority=...) with the prompt as given
  (str, TextPrompt or TokensPrompt), then _run_engine, which steps the engine until no request is left.
- chat renders its conversations and calls self.generate (re-entrant: one call inside another).
- embed, classify -> self.encode; score (embedding model) -> self.embed for both sides.
- beam_search calls self.generate once per step, with one one-token request per beam.
- no enqueue / wait_for_completion; RequestOutput.metrics is always None in this version.
Request ids are "0", "1", ... counted across calls by ``self.request_counter``.
"""

from __future__ import annotations

import itertools
from typing import Any

from fake_vllm.engine_core import as_conversations, as_list, detokenize, per_prompt, prompt_text_and_ids, render_chat

from vllm.beam_search import BeamSearchOutput, BeamSearchSequence
from vllm.engine.arg_utils import EngineArgs

# Imported through the 0.11 alias module, so that the instrumentation's hook on it is exercised.
from vllm.engine.llm_engine import LLMEngine
from vllm.outputs import (
    ClassificationRequestOutput,
    EmbeddingRequestOutput,
    PoolingRequestOutput,
    RequestOutput,
    ScoringOutput,
    ScoringRequestOutput,
)
from vllm.pooling_params import PoolingParams
from vllm.sampling_params import BeamSearchParams, RequestOutputKind, SamplingParams


class LLM:
    def __init__(self, model: str, **kwargs: Any) -> None:
        # vLLM's offline default: no stats logging (in 0.11.0 metrics is None either way).
        if "disable_log_stats" not in kwargs:
            kwargs["disable_log_stats"] = True
        self.engine_args = EngineArgs(model=model, **kwargs)
        self.llm_engine = LLMEngine.from_engine_args(engine_args=self.engine_args, usage_context="LLM_CLASS")
        self.request_counter = itertools.count()

    def generate(
        self,
        prompts: Any,
        sampling_params: SamplingParams | list[SamplingParams] | None = None,
        use_tqdm: bool = True,
        lora_request: Any = None,
        priority: list[int] | None = None,
    ) -> list[RequestOutput]:
        params = sampling_params if sampling_params is not None else SamplingParams()
        self._validate_and_add_requests(
            prompts, params, use_tqdm=use_tqdm, lora_request=lora_request, priority=priority
        )
        return self._run_engine(use_tqdm=use_tqdm)

    def chat(
        self,
        messages: Any,
        sampling_params: SamplingParams | list[SamplingParams] | None = None,
        use_tqdm: bool = True,
        lora_request: Any = None,
        chat_template: str | None = None,
        add_generation_prompt: bool = True,
        continue_final_message: bool = False,
        tools: list[dict[str, Any]] | None = None,
    ) -> list[RequestOutput]:
        prompts = [{"prompt": render_chat(c)} for c in as_conversations(messages)]
        return self.generate(prompts, sampling_params=sampling_params, use_tqdm=use_tqdm, lora_request=lora_request)

    def encode(
        self,
        prompts: Any,
        pooling_params: PoolingParams | None = None,
        *,
        use_tqdm: bool = True,
        lora_request: Any = None,
        pooling_task: str | None = None,
        tokenization_kwargs: dict[str, Any] | None = None,
    ) -> list[PoolingRequestOutput]:
        params = pooling_params if pooling_params is not None else PoolingParams(task=pooling_task)
        self._validate_and_add_requests(prompts, params, use_tqdm=use_tqdm, lora_request=lora_request)
        return self._run_engine(use_tqdm=use_tqdm)

    def embed(self, prompts: Any, *, use_tqdm: bool = True, pooling_params=None, lora_request=None, **kwargs):
        items = self.encode(
            prompts, pooling_params, use_tqdm=use_tqdm, lora_request=lora_request, pooling_task="embed", **kwargs
        )
        return [EmbeddingRequestOutput.from_base(item) for item in items]

    def classify(self, prompts: Any, *, use_tqdm: bool = True, pooling_params=None, lora_request=None, **kwargs):
        items = self.encode(
            prompts, pooling_params, use_tqdm=use_tqdm, lora_request=lora_request, pooling_task="classify", **kwargs
        )
        return [ClassificationRequestOutput.from_base(item) for item in items]

    def score(self, data_1: Any, data_2: Any, /, *, use_tqdm: bool = True, pooling_params=None, lora_request=None):
        """With an embedding model: embeds both sides, scores each pair by the dot product."""
        firsts = self.embed(as_list(data_1), use_tqdm=use_tqdm, lora_request=lora_request)
        seconds = self.embed(as_list(data_2), use_tqdm=use_tqdm, lora_request=lora_request)
        if len(firsts) == 1:
            firsts = firsts * len(seconds)
        return [
            ScoringRequestOutput(
                f"{a.request_id}_{b.request_id}",
                ScoringOutput(sum(x * y for x, y in zip(a.outputs.embedding, b.outputs.embedding, strict=False))),
                a.prompt_token_ids + b.prompt_token_ids,
                0,
                True,
            )
            for a, b in zip(firsts, seconds, strict=True)
        ]

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
            flat = [(i, beam) for i, group in enumerate(beams) for beam in group]
            outputs = self.generate(
                [{"prompt_token_ids": beam.tokens} for _, beam in flat],
                sampling_params=one_token,
                use_tqdm=False,
                lora_request=lora_request,
            )
            candidates: dict[int, list[BeamSearchSequence]] = {}
            for (group, beam), output in zip(flat, outputs, strict=True):
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

    # ---- internals

    def _validate_and_add_requests(self, prompts, params, *, use_tqdm, lora_request, priority=None) -> None:
        prompts = as_list(prompts)
        params_list = per_prompt(params, len(prompts), "sampling_params")
        loras = per_prompt(lora_request, len(prompts), "lora_request")
        priorities = priority if priority is not None else [0] * len(prompts)
        for prompt, p, lora, prio in zip(prompts, params_list, loras, priorities, strict=True):
            self._add_request(prompt, p, lora_request=lora, priority=prio)

    def _add_request(self, prompt: Any, params: Any, lora_request: Any = None, priority: int = 0) -> None:
        if isinstance(params, SamplingParams):
            params.output_kind = RequestOutputKind.FINAL_ONLY
        request_id = str(next(self.request_counter))
        self.llm_engine.add_request(
            request_id, prompt, params, lora_request=lora_request, tokenization_kwargs=None, priority=priority
        )

    def _run_engine(self, *, use_tqdm: bool = True) -> list[Any]:
        outputs = []
        while self.llm_engine.has_unfinished_requests():
            for output in self.llm_engine.step():
                if output.finished:
                    outputs.append(output)
        return sorted(outputs, key=lambda x: int(x.request_id))
