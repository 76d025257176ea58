"""Reproduces vllm 0.32's entrypoints/pooling/offline.py: PoolingOfflineMixin.

embed and classify call self.encode; encode and score run _run_tiling_engine, which keeps at most
``max_num_seqs * 2`` requests in flight and steps the engine itself.
"""

from __future__ import annotations

from typing import Any

from fake_vllm.engine_core import as_list, per_prompt

from vllm.outputs import (
    ClassificationRequestOutput,
    EmbeddingRequestOutput,
    PoolingRequestOutput,
    ScoringRequestOutput,
)
from vllm.pooling_params import PoolingParams


class PoolingOfflineMixin:
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
        return self._run_tiling_engine(as_list(prompts), params, lora_request)

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
        """A cross-encoder: one request per (data_1, data_2) pair."""
        firsts, seconds = as_list(data_1), as_list(data_2)
        if len(firsts) == 1:
            firsts = firsts * len(seconds)
        pairs = [f"{a} [SEP] {b}" for a, b in zip(firsts, seconds, strict=True)]
        params = pooling_params if pooling_params is not None else PoolingParams(task="score")
        return [ScoringRequestOutput.from_base(o) for o in self._run_tiling_engine(pairs, params, lora_request)]

    def _run_tiling_engine(self, prompts: list, params: PoolingParams, lora_request: Any) -> list[PoolingRequestOutput]:
        limit = self.llm_engine.vllm_config.scheduler_config.max_num_seqs * 2
        loras = per_prompt(lora_request, len(prompts), "lora_request")
        todo = list(zip(prompts, loras, strict=True))
        outputs, in_flight = [], 0
        while todo or self.llm_engine.has_unfinished_requests():
            while todo and in_flight < limit:
                prompt, lora = todo.pop(0)
                self._add_request(prompt, params, lora_request=lora)
                in_flight += 1
            for output in self.llm_engine.step():
                if output.finished:
                    outputs.append(output)
                    in_flight -= 1
        return sorted(outputs, key=lambda x: int(x.request_id))
