"""Reproduces vllm 0.32's entrypoints/llm.py: ``LLM`` is only ``__init__`` over mixins.

Every public method is defined on a mixin (entrypoints/common/offline.py,
entrypoints/pooling/offline.py, entrypoints/generate/beam_search/offline.py), none on LLM itself.
"""

from __future__ import annotations

import itertools
from typing import Any

from vllm.engine.arg_utils import EngineArgs
from vllm.entrypoints.common.offline import OfflineInferenceMixin
from vllm.entrypoints.generate.beam_search.offline import BeamSearchOfflineMixin
from vllm.entrypoints.pooling.offline import PoolingOfflineMixin
from vllm.v1.engine.llm_engine import LLMEngine


class RLOfflineMixin:
    """Reproduces the presence of vllm 0.32's RL mixin; none of its methods is reproduced."""


class LLM(BeamSearchOfflineMixin, PoolingOfflineMixin, RLOfflineMixin, OfflineInferenceMixin):
    def __init__(self, model: str, **kwargs: Any) -> None:
        # vLLM's offline default: no per-request stats (RequestOutput.metrics is None).
        if "disable_log_stats" not in kwargs:
            kwargs["disable_log_stats"] = True
        self.engine_args = EngineArgs(model=model, **kwargs)
        self.llm_engine = LLMEngine.from_engine_args(engine_args=self.engine_args, usage_context="LLM_CLASS")
        self.request_counter = itertools.count()
