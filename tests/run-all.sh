#!/usr/bin/env bash
# Builds ramtrain twice and runs every test in both builds:
#   build/       warnings are errors, CUDA backend compiled when nvcc is present
#   build-asan/  AddressSanitizer + UndefinedBehaviorSanitizer (CPU only: the
#                CUDA runtime and ASan do not share an address space well)
# CUDA tests exit 77 (skipped) where no GPU is visible.
set -euo pipefail
cd "$(dirname "$0")/.."
jobs=$(nproc)

cmake -S . -B build -DRAMTRAIN_WERROR=ON
cmake --build build -j"$jobs"
ctest --test-dir build --output-on-failure

cmake -S . -B build-asan -DRAMTRAIN_WERROR=ON -DRAMTRAIN_SANITIZE=ON -DRAMTRAIN_CUDA=OFF
cmake --build build-asan -j"$jobs"
ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 UBSAN_OPTIONS=print_stacktrace=1 \
  ctest --test-dir build-asan --output-on-failure
