"""vLLM's data objects, as both fake trees expose them (re-exported under vLLM's module paths).

Only the fields are reproduced, with vLLM 0.32's names and defaults; vLLM 0.11.0 has the same
fields for everything read here (its ``RequestOutput.metrics`` is always None, which the 0.11.0
engine reproduces, not these classes).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

# ---- vllm/sampling_params.py ------------------------------------------------------------------


class RequestOutputKind(enum.Enum):
    """Reproduces vllm/sampling_params.py: RequestOutputKind."""

    CUMULATIVE = 0
    DELTA = 1
    FINAL_ONLY = 2


class SamplingParams:
    """Reproduces vllm/sampling_params.py: SamplingParams (0.32 defaults; top_k 0 = disabled).

    ``stop`` is normalised to a list as vLLM does (None -> [], str -> [str]).
    """

    def __init__(
        self,
        n: int = 1,
        presence_penalty: float = 0.0,
        frequency_penalty: float = 0.0,
        repetition_penalty: float = 1.0,
        temperature: float = 1.0,
        top_p: float = 1.0,
        top_k: int = 0,
        seed: int | None = None,
        stop: str | list[str] | None = None,
        ignore_eos: bool = False,
        max_tokens: int | None = 16,
        logprobs: int | None = None,
        output_kind: RequestOutputKind = RequestOutputKind.CUMULATIVE,
    ) -> None:
        self.n = n
        self.presence_penalty = presence_penalty
        self.frequency_penalty = frequency_penalty
        self.repetition_penalty = repetition_penalty
        self.temperature = temperature
        self.top_p = top_p
        self.top_k = top_k
        self.seed = seed
        self.stop = [] if stop is None else [stop] if isinstance(stop, str) else list(stop)
        self.ignore_eos = ignore_eos
        self.max_tokens = max_tokens
        self.logprobs = logprobs
        self.output_kind = output_kind


@dataclass
class BeamSearchParams:
    """Reproduces vllm/sampling_params.py: BeamSearchParams."""

    beam_width: int
    max_tokens: int
    ignore_eos: bool = False
    temperature: float = 0.0
    length_penalty: float = 1.0


# ---- vllm/pooling_params.py -------------------------------------------------------------------


@dataclass
class PoolingParams:
    """Reproduces vllm/pooling_params.py: PoolingParams (no sampling fields at all)."""

    task: str | None = None
    dimensions: int | None = None
    normalize: bool | None = None
    output_kind: RequestOutputKind = RequestOutputKind.FINAL_ONLY


# ---- vllm/v1/metrics/stats.py -----------------------------------------------------------------


@dataclass
class RequestStateStats:
    """Reproduces vllm 0.32's v1/metrics/stats.py: RequestStateStats.

    ``arrival_time`` and ``first_token_latency`` are frontend wall clock (time.time()); the ``*_ts``
    fields are EngineCore monotonic clock (here a fake one around 3500.0 s).
    """

    num_generation_tokens: int = 0
    num_preemptions: int = 0
    arrival_time: float = 0.0
    queued_ts: float = 0.0
    scheduled_ts: float = 0.0
    first_token_ts: float = 0.0
    last_token_ts: float = 0.0
    first_token_latency: float = 0.0
    is_corrupted: bool = False


# ---- vllm/outputs.py --------------------------------------------------------------------------


@dataclass
class CompletionOutput:
    """Reproduces vllm/outputs.py: CompletionOutput."""

    index: int
    text: str
    token_ids: list[int]
    cumulative_logprob: float | None
    logprobs: Any
    finish_reason: str | None = None
    stop_reason: int | str | None = None
    lora_request: Any = None


class RequestOutput:
    """Reproduces vllm/outputs.py: RequestOutput (``request_id`` is the id given to add_request)."""

    def __init__(
        self,
        request_id: str,
        prompt: str | None,
        prompt_token_ids: list[int] | None,
        prompt_logprobs: Any,
        outputs: list[CompletionOutput],
        finished: bool,
        metrics: RequestStateStats | None = None,
        lora_request: Any = None,
        encoder_prompt: str | None = None,
        encoder_prompt_token_ids: list[int] | None = None,
        num_cached_tokens: int | None = None,
        **kwargs: Any,
    ) -> None:
        self.request_id = request_id
        self.prompt = prompt
        self.prompt_token_ids = prompt_token_ids
        self.prompt_logprobs = prompt_logprobs
        self.outputs = outputs
        self.finished = finished
        self.metrics = metrics
        self.lora_request = lora_request
        self.encoder_prompt = encoder_prompt
        self.encoder_prompt_token_ids = encoder_prompt_token_ids
        self.num_cached_tokens = num_cached_tokens

    def __repr__(self) -> str:
        return f"RequestOutput(request_id={self.request_id!r}, finished={self.finished}, outputs={self.outputs!r})"


@dataclass
class PoolingOutput:
    """Reproduces vllm/outputs.py: PoolingOutput."""

    data: list[float]


class PoolingRequestOutput:
    """Reproduces vllm/outputs.py: PoolingRequestOutput -- no metrics, no completions."""

    def __init__(
        self,
        request_id: str,
        outputs: Any,
        prompt_token_ids: list[int],
        num_cached_tokens: int,
        finished: bool,
        error: Any = None,
    ) -> None:
        self.request_id = request_id
        self.outputs = outputs
        self.prompt_token_ids = prompt_token_ids
        self.num_cached_tokens = num_cached_tokens
        self.finished = finished
        self.error = error


@dataclass
class EmbeddingOutput:
    embedding: list[float]


@dataclass
class ClassificationOutput:
    probs: list[float]


@dataclass
class ScoringOutput:
    score: float


class EmbeddingRequestOutput(PoolingRequestOutput):
    """Reproduces vllm/outputs.py: EmbeddingRequestOutput.from_base (what LLM.embed returns)."""

    @classmethod
    def from_base(cls, output: PoolingRequestOutput) -> EmbeddingRequestOutput:
        return cls(
            output.request_id,
            EmbeddingOutput(list(output.outputs.data)),
            output.prompt_token_ids,
            output.num_cached_tokens,
            output.finished,
        )


class ClassificationRequestOutput(PoolingRequestOutput):
    @classmethod
    def from_base(cls, output: PoolingRequestOutput) -> ClassificationRequestOutput:
        return cls(
            output.request_id,
            ClassificationOutput(list(output.outputs.data)),
            output.prompt_token_ids,
            output.num_cached_tokens,
            output.finished,
        )


class ScoringRequestOutput(PoolingRequestOutput):
    @classmethod
    def from_base(cls, output: PoolingRequestOutput) -> ScoringRequestOutput:
        return cls(
            output.request_id,
            ScoringOutput(output.outputs.data[0]),
            output.prompt_token_ids,
            output.num_cached_tokens,
            output.finished,
        )


# ---- vllm/beam_search.py ----------------------------------------------------------------------


@dataclass
class BeamSearchSequence:
    tokens: list[int]
    cum_logprob: float = 0.0
    text: str = ""
    finish_reason: str | None = None


@dataclass
class BeamSearchOutput:
    sequences: list[BeamSearchSequence] = field(default_factory=list)


# ---- vllm/lora/request.py ----------------------------------------------------------------------


@dataclass
class LoRARequest:
    """Reproduces vllm/lora/request.py: LoRARequest (the adapter's name is ``lora_name``)."""

    lora_name: str
    lora_int_id: int
    lora_path: str = ""


# ---- vllm/v1/engine/exceptions.py -------------------------------------------------------------


class EngineGenerateError(Exception):
    """Reproduces vllm/v1/engine/exceptions.py: raised when a request fails (engine still alive)."""


class EngineDeadError(Exception):
    """Reproduces vllm/v1/engine/exceptions.py: raised when the EngineCore process died."""


# ---- vllm/config, vllm/engine/arg_utils.py ----------------------------------------------------


@dataclass
class ModelConfig:
    """The two fields of vllm/config ModelConfig the instrumentation reads; vLLM sets
    ``served_model_name`` to the model when none is given."""

    model: str
    served_model_name: str | None = None

    def __post_init__(self) -> None:
        self.served_model_name = self.served_model_name or self.model


@dataclass
class SchedulerConfig:
    max_num_seqs: int = 256


@dataclass
class VllmConfig:
    model_config: ModelConfig
    scheduler_config: SchedulerConfig


@dataclass
class EngineArgs:
    """Reproduces vllm/engine/arg_utils.py: EngineArgs (a dataclass: unknown arguments are a TypeError).

    vLLM's own default is ``disable_log_stats=False``; ``LLM.__init__`` overrides it to True.
    """

    model: str
    served_model_name: str | None = None
    disable_log_stats: bool = False
    max_num_seqs: int = 256
    max_model_len: int | None = None
    dtype: str = "auto"
    enforce_eager: bool = False
    seed: int | None = None
    runner: str = "auto"

    def create_engine_config(self, usage_context: Any = None) -> VllmConfig:
        return VllmConfig(ModelConfig(self.model, self.served_model_name), SchedulerConfig(self.max_num_seqs))
