"""Opt-in capture of prompts and completions as gen_ai.input.messages / gen_ai.output.messages.

Off by default (semconv: content SHOULD NOT be captured by default). Enabled by the Python GenAI
instrumentations' variable OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT: ``true`` or, with the
latest-experimental semconv opt-in, ``SPAN_ONLY`` / ``SPAN_AND_EVENT`` (events are not emitted: the
span attributes are). Every text part is truncated to OTEL_INSTRUMENTATION_VLLM_CONTENT_MAX_LENGTH
characters (default 8192), so the JSON stays valid.
"""

from __future__ import annotations

import json
import os
from typing import Any

CAPTURE_VARIABLE = "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"
MAX_LENGTH_VARIABLE = "OTEL_INSTRUMENTATION_VLLM_CONTENT_MAX_LENGTH"
DEFAULT_MAX_LENGTH = 8192
_ENABLED_VALUES = {"true", "1", "span_only", "span_and_event"}


class ContentPolicy:
    """Read once at instrument() time."""

    def __init__(self, capture: bool | None = None, max_length: int | None = None) -> None:
        if capture is None:
            capture = os.environ.get(CAPTURE_VARIABLE, "").strip().lower() in _ENABLED_VALUES
        if max_length is None:
            try:
                max_length = int(os.environ.get(MAX_LENGTH_VARIABLE, "") or DEFAULT_MAX_LENGTH)
            except ValueError:
                max_length = DEFAULT_MAX_LENGTH
        self.capture = capture
        self.max_length = max(0, max_length)

    def _text(self, text: str) -> str:
        return text if len(text) <= self.max_length else text[: self.max_length]

    def input_messages(self, prompt: Any, conversation: Any = None) -> str | None:
        """JSON of the request's input: chat roles when it came from a conversation, else one
        user message with the prompt text, or its token ids when it was given as token ids."""
        if conversation:
            messages = []
            for message in conversation:
                if not isinstance(message, dict):
                    continue
                content = message.get("content")
                if isinstance(content, str):
                    parts = [{"type": "text", "content": self._text(content)}]
                elif isinstance(content, list):
                    parts = [
                        {"type": "text", "content": self._text(str(p.get("text", "")))}
                        for p in content
                        if isinstance(p, dict) and p.get("type") == "text"
                    ]
                else:
                    parts = []
                messages.append({"role": str(message.get("role", "user")), "parts": parts})
            return json.dumps(messages, ensure_ascii=False)
        text, token_ids = prompt_text_and_token_ids(prompt)
        if text is not None:
            part: dict[str, Any] = {"type": "text", "content": self._text(text)}
        elif token_ids is not None:
            part = {"type": "token_ids", "token_ids": list(token_ids)[: self.max_length]}
        else:
            return None
        return json.dumps([{"role": "user", "parts": [part]}], ensure_ascii=False)

    def output_messages(self, completions: Any) -> str | None:
        messages = [
            self._output_message(completion.text, getattr(completion, "finish_reason", None))
            for completion in completions or ()
            if getattr(completion, "text", None) is not None
        ]
        return json.dumps(messages, ensure_ascii=False) if messages else None

    def output_text_messages(self, text: str | None, finish_reason: str | None) -> str | None:
        """One generated text (serving keeps the text, not completion objects)."""
        if text is None:
            return None
        return json.dumps([self._output_message(text, finish_reason)], ensure_ascii=False)

    def _output_message(self, text: str, finish_reason: str | None) -> dict[str, Any]:
        return {
            "role": "assistant",
            "parts": [{"type": "text", "content": self._text(text)}],
            "finish_reason": finish_reason or "",
        }


def prompt_text_and_token_ids(prompt: Any) -> tuple[str | None, Any]:
    """The text and token ids of a prompt as LLMEngine.add_request receives it (a str, a
    TextPrompt/TokensPrompt dict, or an engine input dict)."""
    if isinstance(prompt, str):
        return prompt, None
    if isinstance(prompt, dict):
        text = prompt.get("prompt")
        return (text if isinstance(text, str) else None), prompt.get("prompt_token_ids")
    return getattr(prompt, "prompt", None), getattr(prompt, "prompt_token_ids", None)
