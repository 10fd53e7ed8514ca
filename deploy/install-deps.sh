#!/usr/bin/env bash
# Installs every Debian 12 package ramtrain needs to build, run and test.
# Run as root (or through sudo). Safe to run again: apt-get skips what is there.
set -euo pipefail

pkgs=(
  build-essential cmake pkg-config git
  libzmq3-dev                       # ZeroMQ: messages between services
  libprotobuf-c-dev protobuf-c-compiler  # protobuf-c runtime and protoc-c
  liburing-dev                      # io_uring I/O engine
  libhwloc-dev                      # NUMA / core topology
  libopenblas-openmp-dev            # sgemm for the CPU backend (OpenMP build: one thread pool)
  libjansson-dev                    # JSON: config.json, safetensors headers
  libyaml-dev                       # run configs
  libonig-dev                       # Oniguruma: the regexes of tokenizer.json (Hugging Face's engine)
  libutf8proc-dev                   # NFC / NFKC normalizers
  libzstd-dev                       # .zst data files
  libcmocka-dev                     # unit tests
  python3 python3-torch python3-numpy  # PyTorch: the numerical oracle of the tests
  python3-zmq                       # tests send raw (and broken) messages to the services
  fio                               # bench_io and the spill benchmark compare against it
)

# node + npm for the reference tokenizers of the tests (npm packages, tests/js).
# Where a node from elsewhere (e.g. NodeSource) is installed, Debian's npm
# conflicts with it, and its own npm serves.
if ! command -v npm >/dev/null 2>&1; then
  pkgs+=(nodejs npm)
fi

sudo=""
if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update
$sudo apt-get install -y --no-install-recommends "${pkgs[@]}"

# The npm packages the tokenizer tests compare against, pinned by
# tests/js/package-lock.json, into tests/js/node_modules (git-ignored).
js="$(cd "$(dirname "$0")/.." && pwd)/tests/js"
if [ -f "$js/package-lock.json" ]; then
  (cd "$js" && npm ci --no-audit --no-fund --loglevel=error)
fi
