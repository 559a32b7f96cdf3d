#!/usr/bin/env bash
# Installs a CUDA 13.0 compiler toolchain (nvcc, ptxas, NVVM, CUDA and CCCL headers) from PyPI
# into .cuda-toolkit/ (git-ignored), enough to build the `cuda` feature on a machine without a
# GPU, and prints the environment to build with:
#
#   eval "$(bash .ci/cuda-toolkit.sh)"
#   cargo check --workspace --all-targets --features sbert/cuda,sbert-cli/cuda
#
# The wheels are pinned to one release: nvidia-cuda-nvcc leaves NVVM and the CRT headers
# unpinned, and a newer NVVM writes PTX that this ptxas refuses. cudarc 0.19 (candle 0.11's
# CUDA backend) supports CUDA 12.0–13.4. The compute capability is explicit (no GPU to ask):
# 90 (H100/H200) unless CUDA_COMPUTE_CAP says otherwise.
set -euo pipefail
cd "$(dirname "$0")/.."

dir=.cuda-toolkit
if [ ! -x "$dir/venv/bin/pip" ]; then
    python3 -m venv "$dir/venv" >&2
fi
"$dir/venv/bin/pip" install --quiet --disable-pip-version-check \
    nvidia-cuda-nvcc==13.0.88 nvidia-nvvm==13.0.88 nvidia-cuda-crt==13.0.88 \
    nvidia-cuda-runtime==13.0.96 nvidia-cuda-cccl==13.0.85 >&2
cuda="$(cd "$dir"/venv/lib/python3*/site-packages/nvidia/cu13 && pwd)"
"$cuda/bin/nvcc" --version >&2
cat <<ENV
export PATH="$cuda/bin:\$PATH"
export CUDA_ROOT="$cuda" CUDA_PATH="$cuda" CUDA_HOME="$cuda"
export CUDA_COMPUTE_CAP="${CUDA_COMPUTE_CAP:-90}"
ENV
