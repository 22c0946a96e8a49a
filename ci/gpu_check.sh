#!/usr/bin/env bash
# The CUDA provider's check on a GPU machine without network: CUDA tests, the ONNX node suite on
# [cuda, cpu], and ResNet-18 / BERT-style / GPT-2-style timings against PyTorch eager on the same GPU.
# Usage: ci/gpu_check.sh OUT_DIR   (writes OUT_DIR/gpu_check.log, OUT_DIR/table.txt, OUT_DIR/results.json)
# onnxmux is used from this checkout (PYTHONPATH), nothing is installed; see docs/cuda.md.
set -uo pipefail
out="${1:?usage: ci/gpu_check.sh OUT_DIR}"
mkdir -p "$out"
out="$(cd "$out" && pwd)"
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1
python="${PYTHON:-python3}"
timeout 355 "$python" ci/gpu_check.py "$out" 2>&1 | tee "$out/gpu_check.log"
status=${PIPESTATUS[0]}
[ "$status" = 124 ] && echo "gpu_check: stopped at the 6-minute limit" | tee -a "$out/gpu_check.log"
exit "$status"
