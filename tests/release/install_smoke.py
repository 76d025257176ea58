"""Installs a release artifact from dist/ into a fresh virtual environment and runs the smoke there.

    python tests/release/install_smoke.py wheel [--dist dist] [--python python3.13]
    python tests/release/install_smoke.py sdist [--dist dist]

``wheel`` takes the one wheel in dist/ for this machine's architecture; ``sdist`` takes the one
sdist and lets pip build it (maturin from the package index, cargo, a target directory of its own:
CARGO_TARGET_DIR is removed from the build's environment, so nothing built before is reused). The
environment gets nothing but the artifact and its declared dependencies (``pip check`` must pass,
and vLLM must be absent) for the first phase of ``smoke_installed.py``; opentelemetry-proto, a test
tool, is installed only for the second. The tox environments smoke-wheel and smoke-sdist and the
release workflow run this script.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
SMOKE = HERE / "smoke_installed.py"
TEST_TOOLS = ["opentelemetry-proto >= 1.30"]


def artifact(kind: str, dist: Path) -> Path:
    if kind == "sdist":
        found = sorted(dist.glob("*.tar.gz"))
    else:
        found = sorted(p for p in dist.glob("*.whl") if p.name.endswith(f"_{platform.machine()}.whl"))
    if len(found) != 1:
        raise SystemExit(f"expected one {kind} for {platform.machine()} in {dist}, found {[p.name for p in found]}")
    return found[0]


def run(command: list[str], env: dict[str, str], cwd: Path) -> None:
    print("+", " ".join(command), flush=True)
    subprocess.run(command, env=env, cwd=cwd, check=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("kind", choices=["wheel", "sdist"])
    parser.add_argument("--dist", type=Path, default=Path("dist"))
    parser.add_argument("--python", default=sys.executable, help="the interpreter the environment is made from")
    args = parser.parse_args()
    path = artifact(args.kind, args.dist.resolve())

    # Nothing from the calling environment leaks in: no OTEL_* settings, no other venv, no PYTHONPATH.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "PYTHON", "PIP_", "VIRTUAL_ENV"))}
    if args.kind == "sdist":
        env.pop("CARGO_TARGET_DIR", None)
    with tempfile.TemporaryDirectory(prefix="otel-vllm-smoke-") as tmp:
        work = Path(tmp)
        venv = work / "venv"
        run([args.python, "-m", "venv", str(venv)], env, work)
        python = str(venv / "bin" / "python")
        env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
        pip = [python, "-m", "pip", "--disable-pip-version-check", "--no-input"]

        start = time.monotonic()
        run([*pip, "install", "--no-cache-dir", str(path)], env, work)
        print(f"installed {path.name} in {time.monotonic() - start:.0f} s", flush=True)
        run([*pip, "check"], env, work)
        run([*pip, "list"], env, work)
        run([python, str(SMOKE), "collector-down"], env, work)

        run([*pip, "install", "--no-cache-dir", *TEST_TOOLS], env, work)
        run([python, str(SMOKE), "export"], env, work)
    print(f"install smoke of {path.name}: passed")


if __name__ == "__main__":
    main()
