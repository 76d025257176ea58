"""Reproduces vllm 0.32's entrypoints/common/offline.py: OfflineInferenceMixin.

The call paths the instrumentation depends on:
- generate -> _run_completion -> _add_completion_requests -> _render_and_add_requests -> _add_request
  -> llm_engine.add_request(request_id, prompt, params, lora_request=..., priority=...), then
  _run_engine, which steps the engine until no request is left.
- chat -> _run_chat (chat does NOT call generate).
- enqueue / enqueue_chat only add requests; wait_for_completion runs them.
Request ids are "0", "1", ... counted across calls by ``self.request_counter``.
"""

from __future__ import annotations

from typing import Any

from fake_vllm.engine_core import as_conversations, as_list, per_prompt, prompt_text_and_ids, render_chat

from vllm.outputs import RequestOutput
from vllm.sampling_params import RequestOutputKind, SamplingParams


def _engine_input(prompt: Any) -> dict[str, Any]:
    """The rendered prompt add_request receives: token ids, plus the text when there is one."""
    text, token_ids = prompt_text_and_ids(prompt)
    rendered: dict[str, Any] = {"type": "token", "prompt_token_ids": token_ids}
    if text is not None:
        rendered["prompt"] = text
    return rendered


class OfflineInferenceMixin:
    def generate(
        self,
        prompts: Any,
        sampling_params: SamplingParams | list[SamplingParams] | None = None,
        *,
        use_tqdm: bool = True,
        lora_request: Any = None,
        priority: list[int] | None = None,
        tokenization_kwargs: dict[str, Any] | None = None,
        mm_processor_kwargs: dict[str, Any] | None = None,
    ) -> list[RequestOutput]:
        return self._run_completion(
            prompts, sampling_params, use_tqdm=use_tqdm, lora_request=lora_request, priority=priority
        )

    def chat(
        self,
        messages: Any,
        sampling_params: SamplingParams | list[SamplingParams] | None = None,
        use_tqdm: bool = True,
        lora_request: Any = None,
        priority: list[int] | None = None,
        chat_template: str | None = None,
        add_generation_prompt: bool = True,
        continue_final_message: bool = False,
        tools: list[dict[str, Any]] | None = None,
    ) -> list[RequestOutput]:
        return self._run_chat(
            messages, sampling_params, use_tqdm=use_tqdm, lora_request=lora_request, priority=priority
        )

    def enqueue(
        self,
        prompts: Any,
        sampling_params: SamplingParams | list[SamplingParams] | None = None,
        lora_request: Any = None,
        priority: list[int] | None = None,
        *,
        use_tqdm: bool = False,
        tokenization_kwargs: dict[str, Any] | None = None,
    ) -> list[str]:
        return self._add_completion_requests(prompts, sampling_params, lora_request, priority)

    def enqueue_chat(
        self,
        messages: Any,
        sampling_params: SamplingParams | list[SamplingParams] | None = None,
        lora_request: Any = None,
        priority: list[int] | None = None,
        *,
        use_tqdm: bool = False,
    ) -> list[str]:
        return self._add_chat_requests(messages, sampling_params, lora_request, priority)

    def wait_for_completion(self, output_type: type | None = None, *, use_tqdm: bool = True) -> list[Any]:
        return self._run_engine(output_type or RequestOutput, use_tqdm=use_tqdm)

    # ---- internals

    def _run_completion(self, prompts, sampling_params, *, use_tqdm, lora_request, priority):
        self._add_completion_requests(prompts, sampling_params, lora_request, priority)
        return self._run_engine(RequestOutput, use_tqdm=use_tqdm)

    def _run_chat(self, messages, sampling_params, *, use_tqdm, lora_request, priority):
        self._add_chat_requests(messages, sampling_params, lora_request, priority)
        return self._run_engine(RequestOutput, use_tqdm=use_tqdm)

    def _add_completion_requests(self, prompts, sampling_params, lora_request, priority) -> list[str]:
        return self._render_and_add_requests(
            [_engine_input(p) for p in as_list(prompts)], sampling_params, lora_request, priority
        )

    def _add_chat_requests(self, messages, sampling_params, lora_request, priority) -> list[str]:
        prompts = [_engine_input(render_chat(c)) for c in as_conversations(messages)]
        return self._render_and_add_requests(prompts, sampling_params, lora_request, priority)

    def _render_and_run_requests(self, prompts, params, lora_request, *, use_tqdm, output_type=RequestOutput):
        self._render_and_add_requests([_engine_input(p) for p in prompts], params, lora_request, None)
        return self._run_engine(output_type, use_tqdm=use_tqdm)

    def _render_and_add_requests(self, engine_inputs, params, lora_request, priority) -> list[str]:
        count = len(engine_inputs)
        params_list = per_prompt(params if params is not None else SamplingParams(), count, "sampling_params")
        loras = per_prompt(lora_request, count, "lora_request")
        priorities = priority if priority is not None else [0] * count
        return [
            self._add_request(engine_input, p, lora_request=lora, priority=prio)
            for engine_input, p, lora, prio in zip(engine_inputs, params_list, loras, priorities, strict=True)
        ]

    def _add_request(self, prompt: Any, params: Any, lora_request: Any = None, priority: int = 0) -> str:
        params.output_kind = RequestOutputKind.FINAL_ONLY
        request_id = str(next(self.request_counter))
        self.llm_engine.add_request(request_id, prompt, params, lora_request=lora_request, priority=priority)
        return request_id

    def _run_engine(self, output_type: type, *, use_tqdm: bool = True) -> list[Any]:
        outputs = []
        while self.llm_engine.has_unfinished_requests():
            for output in self.llm_engine.step():
                if output.finished:
                    outputs.append(output)
        return sorted(outputs, key=lambda x: int(x.request_id))
