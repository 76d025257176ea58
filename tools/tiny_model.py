"""Build a tiny random-weight Llama model that real vLLM can load on CPU.

Nothing is downloaded from any hub: the byte-level BPE tokenizer is trained
locally with ``tokenizers`` on the small corpus below, the weights are random
(fixed seed), and everything is written with the ``transformers`` of the
*current* interpreter. Build the model with the python of the environment that
will load it: a tokenizer saved by transformers 5 names its class
``TokenizersBackend``, which transformers 4 (needed by vLLM < ~0.20) cannot load.

Model: 2-layer ``LlamaForCausalLM``, hidden 128, 2 attention heads (head_dim 64,
a size vLLM's CPU attention supports), vocab 512 (tokenizer and model agree, so
every sampled id detokenizes), 512 positions, fp32. Token ids: ``<s>`` = 0,
``</s>`` = 1 (EOS; random weights may emit it early, use ``ignore_eos=True`` for
fixed-length outputs), ``<unk>`` = 2. The chat template renders
``role: content`` lines and ``assistant: `` as generation prompt.

``pooling=True`` writes the same network as an *embedding* model: the weights of
the bare decoder (HF ``LlamaModel``, no LM head) with ``architectures =
["LlamaModel"]``. vLLM registers ``LlamaModel`` as an embedding architecture, so
``LLM(model=d)`` picks the pooling runner by itself (last-token pooling,
normalized) and ``LLM.embed`` / ``LLM.encode`` work; passing ``runner="pooling"``
(vLLM >= 0.10) is harmless. It uses the same decoder attention as generation, so
it works wherever the generative model works on CPU (an encoder-only BERT would
need the encoder-only attention path, which the CPU backends do not all have).

Builds are deterministic (fixed seeds; the same transformers/tokenizers/torch
versions give byte-identical files) and skipped when ``directory`` already holds
a complete build with the same spec (a marker file records the spec, including
the transformers version, so a directory built by another transformers is rebuilt).

Usage::

    from tiny_model import build_tiny_model
    model_dir = build_tiny_model("/tmp/tiny-llama")
    embed_dir = build_tiny_model("/tmp/tiny-llama-embed", pooling=True)

    python tools/tiny_model.py DIR [--pooling]
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile

__all__ = ["build_tiny_model", "CHAT_TEMPLATE", "VOCAB_SIZE", "MAX_POSITIONS"]

VOCAB_SIZE = 512
MAX_POSITIONS = 512
SEED = 1234
SPECIAL_TOKENS = ["<s>", "</s>", "<unk>"]  # ids 0, 1, 2
CHAT_TEMPLATE = (
    "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}assistant: {% endif %}"
)
_MARKER = ".tiny_model_spec.json"
_SPEC_VERSION = 1

# Small fixed corpus: enough distinct byte pairs for 512 - 256 - 3 BPE merges.
_CORPUS = """\
OpenTelemetry is a collection of APIs, SDKs, and tools. Use it to instrument,
generate, collect, and export telemetry data such as metrics, logs, and traces
to help you analyze your software's performance and behavior.
vLLM is a fast and easy-to-use library for LLM inference and serving. It offers
state-of-the-art serving throughput, efficient management of attention key and
value memory with PagedAttention, continuous batching of incoming requests, and
fast model execution. The engine schedules requests, runs the model step by step,
and returns a request output with the generated text and token ids.
A span represents a unit of work or operation. Spans are the building blocks of
traces. A trace is made of one or more spans; the first span is the root span.
Each span has a name, a start time, an end time, attributes, events, and links.
Metrics are measurements captured at runtime: counters, histograms, and gauges.
The time to first token is the latency between the arrival of a request and the
moment the first output token is produced. The time per output token measures
decoding speed. The end-to-end latency covers queueing, prefill, and decode.
User: What is the capital of France? Assistant: The capital of France is Paris.
User: Tell me a short story about a robot. Assistant: Once upon a time, a small
robot learned to paint the sunrise over the quiet hills every single morning.
The quick brown fox jumps over the lazy dog. Pack my box with five dozen liquor
jugs. How vexingly quick daft zebras jump! Sphinx of black quartz, judge my vow.
0 1 2 3 4 5 6 7 8 9 10 11 12 16 32 64 128 256 512 1024 2048 4096 8192
def hello(name): return f"Hello, {name}!"  # print(hello("world"))
{"role": "system", "content": "You are a helpful assistant."}
Prompt tokens, completion tokens, finish reason: stop, length, abort.
"""


def _corpus_lines() -> list[str]:
    lines = [line for line in _CORPUS.splitlines() if line.strip()]
    # Repetition makes pair counts larger but keeps the merge order deterministic.
    return lines * 4


def _spec(pooling: bool) -> dict:
    from importlib.metadata import version  # cheaper than importing transformers

    return {
        "spec_version": _SPEC_VERSION,
        "pooling": bool(pooling),
        "vocab_size": VOCAB_SIZE,
        "max_positions": MAX_POSITIONS,
        "seed": SEED,
        "transformers": version("transformers"),
        "tokenizers": version("tokenizers"),
    }


def _read_marker(directory: str) -> dict | None:
    try:
        with open(os.path.join(directory, _MARKER)) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def _build_into(directory: str, pooling: bool) -> None:
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, LlamaModel, PreTrainedTokenizerFast

    # --- tokenizer -------------------------------------------------------
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_corpus_lines(), trainer=trainer)
    if tok.get_vocab_size() != VOCAB_SIZE:
        raise RuntimeError(
            f"tiny tokenizer has {tok.get_vocab_size()} tokens, expected {VOCAB_SIZE}; extend the corpus"
        )
    for i, t in enumerate(SPECIAL_TOKENS):
        assert tok.token_to_id(t) == i, (t, tok.token_to_id(t))

    hf_tok = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<s>",
        eos_token="</s>",
        unk_token="<unk>",
        pad_token="</s>",
        model_max_length=MAX_POSITIONS,
    )
    hf_tok.chat_template = CHAT_TEMPLATE
    hf_tok.save_pretrained(directory)

    # --- model -----------------------------------------------------------
    config = LlamaConfig(
        vocab_size=VOCAB_SIZE,
        hidden_size=128,
        intermediate_size=256,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=MAX_POSITIONS,
        bos_token_id=0,
        eos_token_id=1,
        pad_token_id=1,
        tie_word_embeddings=False,
    )
    torch.manual_seed(SEED)
    if pooling:
        model = LlamaModel(config)
        model.config.architectures = ["LlamaModel"]
    else:
        model = LlamaForCausalLM(config)
        model.config.architectures = ["LlamaForCausalLM"]
    model = model.to(torch.float32).eval()
    model.save_pretrained(directory)


def build_tiny_model(directory: str, *, pooling: bool = False) -> str:
    """Build the tiny model into ``directory`` (created if needed); return its path.

    Skips the build when ``directory`` already holds a complete build of the
    same spec. ``pooling=True`` builds the embedding variant (see module doc).
    """
    directory = os.path.abspath(directory)
    spec = _spec(pooling)
    if _read_marker(directory) == spec:
        return directory

    os.makedirs(directory, exist_ok=True)
    # Build in a sibling temp dir, then move the files in and write the marker
    # last, so an interrupted or concurrent build never looks complete.
    tmp = tempfile.mkdtemp(prefix=".tiny-model-build-", dir=os.path.dirname(directory))
    try:
        _build_into(tmp, pooling)
        marker = os.path.join(directory, _MARKER)
        if os.path.exists(marker):
            os.unlink(marker)
        for name in sorted(os.listdir(tmp)):
            src = os.path.join(tmp, name)
            if os.path.isfile(src):
                os.chmod(src, 0o644)  # safetensors writes 0600; keep the model shareable
            dst = os.path.join(directory, name)
            if os.path.isdir(dst) and not os.path.islink(dst):
                shutil.rmtree(dst)
            os.replace(src, dst)
        with open(marker + ".tmp", "w") as f:
            json.dump(spec, f, indent=1, sort_keys=True)
        os.replace(marker + ".tmp", marker)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return directory


def _main(argv: list[str]) -> int:
    import argparse

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("directory")
    p.add_argument("--pooling", action="store_true", help="build the embedding variant")
    args = p.parse_args(argv)
    print(build_tiny_model(args.directory, pooling=args.pooling))
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
