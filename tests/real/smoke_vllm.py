"""Smoke test: real vLLM on CPU with the tiny local model.

Run with the python of a venv made by install_vllm.sh:

    VENV=$(tools/install_vllm.sh 0.32.0 | tail -n1)
    "$VENV/bin/python" tests/real/smoke_vllm.py [--no-embed] [--keep DIR]

Builds the tiny model (tools/tiny_model.py) in a temp dir, starts
``LLM(model=d, dtype="float32", enforce_eager=True, max_model_len=512,
disable_log_stats=False)``, runs ``generate`` (8 prompts x 16 tokens), ``chat``
(1 conversation) and, with the embedding variant of the model, ``embed``.
Prints the shape of ``RequestOutput`` / ``RequestOutput.metrics`` and which
``LLM`` methods exist, asserts that ``metrics`` is populated, and prints the
elapsed time of each phase. The last line is ``SMOKE_RESULT {json}``.

``metrics`` is asserted non-None for vLLM >= 0.11.1 only: 0.8 - 0.11.0 (V1
engine) always return ``metrics=None``.

Environment defaults set here (override by exporting them):
``VLLM_CPU_KVCACHE_SPACE=1`` (GiB of KV cache; without it vLLM sizes the cache as
a fraction of RAM), ``HF_HUB_OFFLINE=1``, ``TOKENIZERS_PARALLELISM=false``, and
``TORCHDYNAMO_DISABLE=1``: with ``enforce_eager=True`` vLLM compiles no model
graph, but it still ``torch.compile``s small helpers -- in 0.11.x the CPU sampler's
``compiled_random_sample`` (used when a batch has a request without ``seed``) costs
~35 s of inductor C++ compilation on first use, and on 2 cores engine start is
~40 % faster without dynamo (0.32: 27 s instead of 47 s). Export
``TORCHDYNAMO_DISABLE=0`` to keep torch.compile on.
vLLM's CPU platform forces the ``spawn`` start method for its worker/engine
processes, hence the ``if __name__ == "__main__":`` guard.
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import inspect
import json
import os
import shutil
import sys
import tempfile
import time

os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("TORCHDYNAMO_DISABLE", "1")

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tools"))  # tiny_model

TIMES: dict[str, float] = {}
RESULT: dict = {"times_s": TIMES}


class _phase:
    def __init__(self, name: str):
        self.name = name

    def __enter__(self):
        print(f"--- {self.name} ...", flush=True)
        self.t0 = time.perf_counter()
        return self

    def __exit__(self, *exc):
        TIMES[self.name] = round(time.perf_counter() - self.t0, 3)
        status = "FAILED after" if exc[0] else "done in"
        print(f"--- {self.name}: {status} {TIMES[self.name]:.2f} s", flush=True)
        return False


def _fields(obj) -> dict:
    """Public data fields of an object (dataclass, msgspec struct, slots or plain)."""
    if obj is None:
        return {}
    if dataclasses.is_dataclass(obj):
        return {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)}
    names = list(getattr(type(obj), "__struct_fields__", ()))  # msgspec.Struct
    if not names:
        for klass in type(obj).__mro__:
            names += [s for s in getattr(klass, "__slots__", ()) if s not in names]
        names += [k for k in getattr(obj, "__dict__", {}) if k not in names]
    return {n: getattr(obj, n, "<unset>") for n in names if not n.startswith("_")}


def _short(v, limit=100):
    r = repr(v)
    return r if len(r) <= limit else r[: limit - 3] + "..."


def _print_request_output(out) -> None:
    print(f"RequestOutput type: {type(out).__module__}.{type(out).__qualname__}")
    for k, v in _fields(out).items():
        if k != "outputs":
            print(f"  .{k} = {_short(v)}")
    print(f"  .outputs[0] ({type(out.outputs[0]).__qualname__}):")
    for k, v in _fields(out.outputs[0]).items():
        print(f"      .{k} = {_short(v)}")
    m = out.metrics
    print(f"  .metrics type: {type(m).__module__}.{type(m).__qualname__}")
    for k, v in _fields(m).items():
        print(f"      metrics.{k} = {_short(v)}")


def _engine_kwargs(**extra):
    kw = dict(dtype="float32", enforce_eager=True, max_model_len=512, disable_log_stats=False)
    kw.update(extra)
    return kw


def _shutdown(llm) -> None:
    # Stop the EngineCore process before starting another engine (2 cores, little RAM
    # to spare); `LLM` has no public shutdown in every version.
    engine = getattr(llm, "llm_engine", None)
    core = getattr(engine, "engine_core", None)
    if core is not None and hasattr(core, "shutdown"):
        try:
            core.shutdown()
        except Exception as e:  # noqa: BLE001 - best effort on a smoke run
            print(f"(engine_core.shutdown failed: {e!r})")
    del llm
    gc.collect()


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--no-embed", action="store_true", help="skip the pooling/embed part")
    ap.add_argument("--keep", metavar="DIR", help="build/reuse the models under DIR instead of a deleted temp dir")
    args = ap.parse_args(argv)

    if args.keep:
        return _run(args, args.keep)
    workdir = tempfile.mkdtemp(prefix="otel-vllm-smoke-")
    try:
        return _run(args, workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _run(args, workdir: str) -> int:
    from tiny_model import build_tiny_model

    gen_dir = os.path.join(workdir, "tiny-llama")
    emb_dir = os.path.join(workdir, "tiny-llama-embed")

    with _phase("build_model"):
        build_tiny_model(gen_dir)
    if not args.no_embed:
        with _phase("build_model_pooling"):
            build_tiny_model(emb_dir, pooling=True)

    with _phase("import_vllm"):
        from importlib.metadata import version as dist_version

        import vllm
        from vllm import LLM, SamplingParams

    RESULT["vllm"] = vllm.__version__
    try:
        RESULT["vllm_dist"] = dist_version("vllm")
    except Exception as e:  # noqa: BLE001 - reported, not raised
        RESULT["vllm_dist"] = f"<{type(e).__name__}>"
    import torch
    import transformers

    RESULT["torch"] = torch.__version__
    RESULT["transformers"] = transformers.__version__
    print(
        f"vllm {vllm.__version__} (dist 'vllm': {RESULT['vllm_dist']}), torch {torch.__version__}, "
        f"transformers {transformers.__version__}, python {sys.version.split()[0]}, "
        f"TORCHDYNAMO_DISABLE={os.environ.get('TORCHDYNAMO_DISABLE')}"
    )
    RESULT["TORCHDYNAMO_DISABLE"] = os.environ.get("TORCHDYNAMO_DISABLE")

    methods = {
        m: hasattr(LLM, m)
        for m in (
            "generate",
            "chat",
            "enqueue",
            "enqueue_chat",
            "wait_for_completion",
            "beam_search",
            "encode",
            "embed",
            "classify",
            "score",
            "reward",
            "get_metrics",
            "shutdown",
        )
    }
    RESULT["llm_methods"] = methods
    print("LLM methods:", ", ".join(f"{k}={'yes' if v else 'no'}" for k, v in methods.items()))
    try:
        RESULT["run_engine_signature"] = str(inspect.signature(LLM._run_engine))
    except (AttributeError, ValueError, TypeError):
        RESULT["run_engine_signature"] = None
    print("LLM._run_engine", RESULT["run_engine_signature"])

    with _phase("engine_start"):
        llm = LLM(model=gen_dir, **_engine_kwargs())

    prompts = [f"Prompt number {i}: the quick brown fox" for i in range(8)]
    sp = SamplingParams(max_tokens=16, temperature=0.8, seed=0, ignore_eos=True)
    with _phase("generate_8x16"):
        outs = llm.generate(prompts, sp, use_tqdm=False)
    with _phase("generate_8x16_again"):
        outs2 = llm.generate(prompts, sp, use_tqdm=False)

    assert len(outs) == 8 and len(outs2) == 8
    for o in outs:
        assert o.finished, o
        assert len(o.outputs[0].token_ids) == 16, o
    print(f"generate: ids {[o.request_id for o in outs]} then {[o.request_id for o in outs2]}")
    print(f"sample text: {outs[0].outputs[0].text!r}")
    _print_request_output(outs[0])
    m = outs[0].metrics
    RESULT["metrics_type"] = None if m is None else f"{type(m).__module__}.{type(m).__qualname__}"
    RESULT["metrics_fields"] = sorted(_fields(m))
    RESULT["request_output_fields"] = sorted(_fields(outs[0]))
    RESULT["completion_output_fields"] = sorted(_fields(outs[0].outputs[0]))
    RESULT["has_num_cached_tokens"] = hasattr(outs[0], "num_cached_tokens")
    from packaging.version import Version

    if Version(vllm.__version__).release >= (0, 11, 1):
        assert m is not None, "RequestOutput.metrics is None although disable_log_stats=False"
    else:
        print(f"NOTE: vLLM {vllm.__version__} < 0.11.1: RequestOutput.metrics is {m!r} by design")

    conversation = [
        {"role": "system", "content": "You are a helpful assistant."},
        {"role": "user", "content": "What is the capital of France?"},
    ]
    with _phase("chat_1"):
        chat_outs = llm.chat(conversation, SamplingParams(max_tokens=16, ignore_eos=True), use_tqdm=False)
    assert len(chat_outs) == 1 and len(chat_outs[0].outputs[0].token_ids) == 16
    print(
        f"chat: request_id={chat_outs[0].request_id} prompt={chat_outs[0].prompt!r} "
        f"metrics is None: {chat_outs[0].metrics is None}"
    )
    RESULT["chat_prompt"] = chat_outs[0].prompt

    with _phase("engine_shutdown"):
        _shutdown(llm)
        del llm

    if not args.no_embed:
        # vLLM picks the pooling runner from architectures=["LlamaModel"]; say so
        # explicitly where EngineArgs has `runner` (0.11.0 - 0.32 do); `task="embed"` is
        # the older spelling (untested here: no older wheel runs on Debian 12).
        from vllm.engine.arg_utils import EngineArgs

        fields = {f.name for f in dataclasses.fields(EngineArgs)}
        extra = {"runner": "pooling"} if "runner" in fields else {"task": "embed"}
        RESULT["pooling_kwargs"] = extra
        with _phase("engine_start_pooling"):
            emb_llm = LLM(model=emb_dir, **_engine_kwargs(**extra))
        with _phase("embed_4"):
            emb = emb_llm.embed(["hello world", "the quick brown fox", "a", "OpenTelemetry"], use_tqdm=False)
        e0 = emb[0]
        vec = e0.outputs.embedding
        print(
            f"embed: {type(e0).__qualname__} request_id={e0.request_id} dim={len(vec)} "
            f"norm={sum(x * x for x in vec) ** 0.5:.4f} fields={sorted(_fields(e0))}"
        )
        print(f"  embed output has metrics attr: {hasattr(e0, 'metrics')}")
        assert len(emb) == 4 and len(vec) == 128
        RESULT["embed_output_type"] = type(e0).__qualname__
        RESULT["embed_output_fields"] = sorted(_fields(e0))
        RESULT["embed_dim"] = len(vec)
        with _phase("engine_shutdown_pooling"):
            _shutdown(emb_llm)
            del emb_llm

    print("phase times (s):", json.dumps(TIMES))
    print("SMOKE_RESULT " + json.dumps(RESULT, default=str), flush=True)
    return 0


if __name__ == "__main__":
    t0 = time.perf_counter()
    rc = main(sys.argv[1:])
    print(f"total {time.perf_counter() - t0:.1f} s")
    sys.exit(rc)
