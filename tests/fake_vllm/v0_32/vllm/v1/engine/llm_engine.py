"""Reproduces vllm 0.32's v1/engine/llm_engine.py: LLMEngine, the synchronous frontend of the engine.

What is below it (tokenization, the EngineCore process, output processing) is faked by
``fake_vllm.engine_core.FakeEngineCore``. As in vLLM, ``RequestOutput.metrics`` is a
``RequestStateStats`` only when stats logging is on (``log_stats = not disable_log_stats``).
"""

from __future__ import annotations

import uuid
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
        self.engine_core = FakeEngineCore(vllm_config.scheduler_config.max_num_seqs, stats=log_stats)

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

    def abort_request(self, request_ids: list[str], internal: bool = False) -> None:
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
        kv_hints: Any = None,
    ) -> str:
        """Returns the internal request id (``f"{request_id}-{8 random hex}"``); outputs carry the
        external ``request_id``."""
        if not isinstance(request_id, str):
            raise TypeError(f"request_id must be a string, got {type(request_id)}")
        self.engine_core.add_request(request_id, prompt, params, arrival_time, lora_request)
        return f"{request_id}-{uuid.uuid4().hex[:8]}"

    def step(self) -> list[Any]:
        return self.engine_core.step()
