"""Fake ``vllm`` package trees for the fast test tier (tests/test_offline_fake.py).

They exist because real vLLM cannot produce the shapes these tests need here: it is not installed in
the fast tier (installing it takes minutes and gigabytes), old versions (0.11.0 and its
``metrics=None``, chat -> generate re-entrancy) cannot be installed side by side with the current
one, and error paths (an engine dying mid-batch, aborted requests) cannot be triggered on demand.
The real tier (tests/real) covers real vLLM.

Each tree reproduces only the object shapes and call paths the instrumentation reads, with the
same module paths as vLLM (``vllm.entrypoints.llm``, ``vllm.v1.engine.llm_engine``, ...):

- ``v0_32/vllm``: vLLM 0.32 -- ``LLM`` built from mixins, ``enqueue`` / ``wait_for_completion``,
  chat and beam search not going through ``generate``, ``RequestOutput.metrics`` filled with a
  ``RequestStateStats`` when stats logging is on.
- ``v0_11_0/vllm``: vLLM 0.11.0 -- methods defined on ``LLM`` itself, chat and beam search calling
  ``self.generate``, ``metrics`` always None.

Put a tree's directory first on ``sys.path`` (``TREES``) and import ``vllm`` as usual; remove every
``vllm*`` module from ``sys.modules`` afterwards. What both trees share (the output and parameter
objects, and the deterministic engine core that stands in for vLLM's EngineCore process) lives in
``fake_vllm.shapes`` and ``fake_vllm.engine_core``.
"""

from __future__ import annotations

from pathlib import Path

_HERE = Path(__file__).parent

# vLLM version -> the directory to put on sys.path
TREES = {
    "0.32": _HERE / "v0_32",
    "0.11.0": _HERE / "v0_11_0",
}
