"""Reproduces vllm 0.11.0's v1/engine/llm_engine.py: LLMEngine, the synchronous frontend of the engine.

What is below it is faked by ``fake_vllm.engine_core.FakeEngineCore``. In vLLM 0.8 - 0.11.0 (V1)
``RequestOutput.metrics`` is always None, whatever ``log_stats`` is: the fake core never attaches
stats. ``add_request`` returns None (it returns the internal id from 0.11.1).
"""

from __future__ import annotations

from typing import Any

from fake_vllm.engine_core import FakeEngineCore
from fake_vllm.shapes import EngineArgs, VllmConfig


class LLMEngine:
    def __init__(
        self,
        vllm_config: VllmConfig,
        log_stats: bool,
        usage_context: Any = None,
        stat_loggers: Any = None,
        multiprocess_mode: bool = False,
    ) -> None:
        self.vllm_config = vllm_config
        self.model_config = vllm_config.model_config
        self.log_stats = log_stats
        self.engine_core = FakeEngineCore(vllm_config.scheduler_config.max_num_seqs, stats=False)

    @classmethod
    def from_engine_args(
        cls,
        engine_args: EngineArgs,
        usage_context: Any = None,
        stat_loggers: Any = None,
        enable_multiprocessing: bool = False,
    ) -> LLMEngine:
        return cls(
            vllm_config=engine_args.create_engine_config(usage_context),
            log_stats=not engine_args.disable_log_stats,
            usage_context=usage_context,
            stat_loggers=stat_loggers,
        )

    def get_num_unfinished_requests(self) -> int:
        return self.engine_core.get_num_unfinished_requests()

    def has_unfinished_requests(self) -> bool:
        return self.engine_core.has_unfinished_requests()

    def abort_request(self, request_ids: list[str]) -> None:
        self.engine_core.abort_requests(request_ids)

    def add_request(
        self,
        request_id: str,
        prompt: Any,
        params: Any,
        arrival_time: float | None = None,
        lora_request: Any = None,
        tokenization_kwargs: dict[str, Any] | None = None,
        trace_headers: Any = None,
        priority: int = 0,
        prompt_text: str | None = None,
    ) -> None:
        self.engine_core.add_request(request_id, prompt, params, arrival_time, lora_request)

    def step(self) -> list[Any]:
        return self.engine_core.step()
