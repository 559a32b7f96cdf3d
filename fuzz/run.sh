#!/usr/bin/env bash
# Runs every fuzz target for SECONDS each (default 60), starting from the committed seeds in
# fuzz/seeds/<target> and growing fuzz/corpus/<target> (git-ignored). A crash stops the run
# with libFuzzer's report and leaves the input in fuzz/artifacts/<target>/.
# Usage: fuzz/run.sh [SECONDS] [TARGET...]
set -euo pipefail
cd "$(dirname "$0")/.."

seconds="${1:-60}"
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(text_path model_folder readers server_request)

command -v cargo-fuzz >/dev/null 2>&1 || cargo install cargo-fuzz --locked --version 0.13.2
# cargo-fuzz passes unstable -Z flags only for sanitizers; without one (-s none: coverage
# instrumentation only, which is stable) the stable toolchain builds it when it is allowed to
# accept them. The SIMD kernels (the `unsafe` code text_path reaches) are fuzzed under
# AddressSanitizer by hand: RUSTC_BOOTSTRAP=1 cargo fuzz run -s address text_path.
export RUSTC_BOOTSTRAP=1
# One thread per fuzzer: libFuzzer runs one input at a time, and candle's pool would only spin.
export RAYON_NUM_THREADS="${RAYON_NUM_THREADS:-1}"

max_len() {
    case "$1" in
        model_folder) echo 131072 ;;  # the tiny model's weights are 98 KB
        text_path) echo 16384 ;;      # past the 1 KB where prefix tokenization starts
        *) echo 8192 ;;
    esac
}

for target in "${targets[@]}"; do
    mkdir -p "fuzz/corpus/$target"
    echo "== fuzzing $target for ${seconds}s"
    cargo fuzz run -s none "$target" "fuzz/corpus/$target" "fuzz/seeds/$target" -- \
        -max_total_time="$seconds" -max_len="$(max_len "$target")" -timeout=20 \
        -print_final_stats=1
done
