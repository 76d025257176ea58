"""What runs under ``LLMEngine`` in vLLM, faked deterministically for both trees.

In vLLM, ``LLMEngine.add_request`` tokenizes (InputProcessor) and hands the request to the EngineCore
process (scheduler + model); ``LLMEngine.step`` takes the EngineCore's outputs and turns them into
``RequestOutput``s, updating each request's ``RequestStateStats`` (OutputProcessor). This module is
those three parts in one small class:

- tokenizer: one token per whitespace-separated word, after a BOS token (id 1);
- scheduler: first come first served, at most ``max_num_seqs`` requests running, the rest queued;
- model: every running sequence gets one token per step (the first one in its scheduling step);
  a sequence ends at a length derived from its prompt ("stop", i.e. EOS), or at ``max_tokens``
  ("length"); pooling requests finish in their scheduling step;
- clock: the EngineCore's monotonic clock, starting at 3500.0 s and advancing by binary fractions
  (exact in floating point), so that tests can predict every timing;
- outputs: FINAL_ONLY (what ``LLM`` asks for), so ``step()`` returns finished requests only.

Test controls (not vLLM API): ``raise_at_step``, ``abort_at_step``, ``forward_delay_s``.
"""

from __future__ import annotations

import time
from collections import deque
from typing import Any

from fake_vllm.shapes import (
    CompletionOutput,
    PoolingOutput,
    PoolingParams,
    PoolingRequestOutput,
    RequestOutput,
    RequestStateStats,
)

BOS = 1
CLOCK_START = 3500.0
INGEST_S = 1 / 256  # the EngineCore receives an added request (queued_ts)
SCHEDULE_S = 1 / 256  # scheduling, at the start of every step (scheduled_ts)
FORWARD_S = 1 / 64  # one forward pass: one token for every running sequence (*_token_ts)
FRONTEND_S = 1 / 512  # frontend time between arrival and the EngineCore queueing the request


def tokenize(text: str) -> list[int]:
    return [BOS] + [sum(map(ord, word)) % 997 + 3 for word in text.split()]


def detokenize(token_ids: list[int]) -> str:
    return "".join(f" w{t}" for t in token_ids)


def render_chat(conversation: list[dict]) -> str:
    """A chat template: ``<|role|> content`` per message, then the generation prompt."""
    parts = []
    for message in conversation:
        content = message.get("content")
        if isinstance(content, list):
            content = " ".join(p.get("text", "") for p in content if p.get("type") == "text")
        parts.append(f"<|{message['role']}|> {content}")
    return " ".join(parts) + " <|assistant|>"


def prompt_text_and_ids(prompt: Any) -> tuple[str | None, list[int]]:
    """A str, a TextPrompt ``{"prompt": ...}``, a TokensPrompt ``{"prompt_token_ids": ...}`` or an
    engine input dict (token ids, plus the text when there is one)."""
    if isinstance(prompt, str):
        return prompt, tokenize(prompt)
    if "prompt_token_ids" in prompt:
        return prompt.get("prompt"), list(prompt["prompt_token_ids"])
    return prompt["prompt"], tokenize(prompt["prompt"])


# ---- frontend helpers shared by both LLM fakes --------------------------------------------------


def as_list(prompts: Any) -> list:
    """LLM's prompt argument: one prompt (str or dict) or a sequence of them."""
    return [prompts] if isinstance(prompts, (str, dict)) else list(prompts)


def per_prompt(value: Any, count: int, name: str) -> list:
    """One value for every prompt, or a list with one per prompt (vLLM raises on a length mismatch)."""
    if isinstance(value, list):
        if len(value) != count:
            raise ValueError(f"The lengths of prompts and {name} must be the same.")
        return value
    return [value] * count


def as_conversations(messages: Any) -> list[list[dict]]:
    """LLM.chat's messages: one conversation (a list of dicts) or a list of conversations."""
    return [messages] if messages and isinstance(messages[0], dict) else list(messages)


# ---- the engine core ----------------------------------------------------------------------------


class _Sequence:
    """One completion of a request; with n > 1 vLLM runs one child request per completion, each
    with its own stats."""

    def __init__(self, index: int, target: int, reason: str, stats: RequestStateStats | None) -> None:
        self.index = index
        self.target = target
        self.reason = reason
        self.token_ids: list[int] = []
        self.finish_reason: str | None = None
        self.stats = stats


class _Request:
    def __init__(self, request_id: str, text: str | None, token_ids: list[int], params: Any, lora: Any) -> None:
        self.request_id = request_id
        self.text = text
        self.token_ids = token_ids
        self.params = params
        self.lora_request = lora
        self.pooling = isinstance(params, PoolingParams)
        self.sequences: list[_Sequence] = []
        self.num_cached_tokens = 0


class FakeEngineCore:
    def __init__(self, max_num_seqs: int, stats: bool) -> None:
        self.max_num_seqs = max_num_seqs
        self.stats = stats  # RequestOutput.metrics is a RequestStateStats, else None
        self.clock = CLOCK_START
        self.steps = 0
        self.waiting: deque[_Request] = deque()
        self.running: list[_Request] = []
        self._seen_prompts: set[tuple[int, ...]] = set()
        self._raise_at: tuple[int, BaseException] | None = None
        self._abort_at: dict[int, tuple[set[str], bool]] = {}
        self._preempt_at: dict[int, set[str]] = {}
        self.forward_delay_s = 0.0  # real sleep per step, to interleave threads

    # -- test controls

    def raise_at_step(self, step: int, error: BaseException) -> None:
        """The ``step``-th call of step() (counted from 1 since the engine was made) raises ``error``."""
        self._raise_at = (step, error)

    def abort_at_step(self, step: int, request_ids: list[str], *, reported: bool = True) -> None:
        """At the ``step``-th step the requests are aborted: ``reported`` returns them finished with
        finish_reason "abort"; otherwise they vanish without an output, as LLMEngine.abort_request
        does."""
        self._abort_at[step] = (set(request_ids), reported)

    def preempt_at_step(self, step: int, request_ids: list[str]) -> None:
        """At the ``step``-th step the running requests are preempted once (vLLM frees their KV cache
        and recomputes them later): their stats count it in num_preemptions."""
        self._preempt_at[step] = set(request_ids)

    # -- what LLMEngine calls

    def add_request(self, request_id: str, prompt: Any, params: Any, arrival_time: float | None, lora: Any) -> None:
        text, token_ids = prompt_text_and_ids(prompt)
        request = _Request(request_id, text, token_ids, params, lora)
        self.clock += INGEST_S
        if not request.pooling:
            for index in range(params.n):
                stats = None
                if self.stats:
                    stats = RequestStateStats(
                        arrival_time=time.time() if arrival_time is None else arrival_time, queued_ts=self.clock
                    )
                natural = 2 + (sum(token_ids) + index) % 4  # where the fake model emits EOS
                if params.ignore_eos or (params.max_tokens is not None and params.max_tokens < natural):
                    request.sequences.append(_Sequence(index, params.max_tokens, "length", stats))
                else:
                    request.sequences.append(_Sequence(index, natural, "stop", stats))
        self.waiting.append(request)

    def has_unfinished_requests(self) -> bool:
        return bool(self.waiting or self.running)

    def get_num_unfinished_requests(self) -> int:
        return len(self.waiting) + len(self.running)

    def abort_requests(self, request_ids: list[str]) -> list[_Request]:
        ids = set(request_ids)
        aborted = [r for r in (*self.waiting, *self.running) if r.request_id in ids]
        self.waiting = deque(r for r in self.waiting if r.request_id not in ids)
        self.running = [r for r in self.running if r.request_id not in ids]
        return aborted

    def step(self) -> list[RequestOutput | PoolingRequestOutput]:
        self.steps += 1
        if self._raise_at is not None and self._raise_at[0] == self.steps:
            error = self._raise_at[1]
            self._raise_at = None
            raise error
        if self.forward_delay_s:
            time.sleep(self.forward_delay_s)
        finished = []
        if self.steps in self._abort_at:
            ids, reported = self._abort_at.pop(self.steps)
            for request in self.abort_requests(list(ids)):
                if reported:
                    for sequence in request.sequences:
                        sequence.finish_reason = sequence.finish_reason or "abort"
                    finished.append(request)
        self.clock += SCHEDULE_S
        while self.waiting and len(self.running) < self.max_num_seqs:
            request = self.waiting.popleft()
            key = tuple(request.token_ids)
            request.num_cached_tokens = len(key) - 1 if key in self._seen_prompts else 0  # prefix cache
            self._seen_prompts.add(key)
            for sequence in request.sequences:
                if sequence.stats is not None:
                    sequence.stats.scheduled_ts = self.clock
            self.running.append(request)
        for request in self.running:
            if request.request_id in self._preempt_at.get(self.steps, ()):
                for sequence in request.sequences:
                    if sequence.stats is not None:
                        sequence.stats.num_preemptions += 1
        self.clock += FORWARD_S
        for request in list(self.running):
            if not request.pooling:
                self._generate(request)
            if all(s.finish_reason is not None for s in request.sequences):
                self.running.remove(request)
                finished.append(request)
        return [self._output(r) for r in finished]

    # -- the model and the OutputProcessor

    def _generate(self, request: _Request) -> None:
        for sequence in request.sequences:
            if sequence.finish_reason is not None:
                continue
            position = len(sequence.token_ids)
            sequence.token_ids.append((request.token_ids[-1] * 31 + 7 * position + 13 * sequence.index) % 997 + 3)
            stats = sequence.stats
            if stats is not None:
                if stats.num_generation_tokens == 0:
                    stats.first_token_ts = self.clock
                    stats.first_token_latency = FRONTEND_S + (self.clock - stats.queued_ts)
                stats.last_token_ts = self.clock
                stats.num_generation_tokens += 1
            if len(sequence.token_ids) >= sequence.target:
                sequence.finish_reason = sequence.reason

    def _output(self, request: _Request) -> RequestOutput | PoolingRequestOutput:
        if request.pooling:
            data = [((t * 37) % 101) / 100 for t in request.token_ids[:4]]
            return PoolingRequestOutput(
                request.request_id, PoolingOutput(data), request.token_ids, request.num_cached_tokens, True
            )
        completions = [
            CompletionOutput(s.index, detokenize(s.token_ids), s.token_ids, None, None, s.finish_reason, None)
            for s in request.sequences
        ]
        # The output carries the stats of the child request that finished last.
        last = max(request.sequences, key=lambda s: (len(s.token_ids), s.index))
        return RequestOutput(
            request.request_id,
            request.text,
            request.token_ids,
            None,
            completions,
            True,
            metrics=last.stats,
            lora_request=request.lora_request,
            num_cached_tokens=request.num_cached_tokens,
        )
