#!/usr/bin/env bash
# The README's test command: installs what is missing, builds, then runs every test through ctest
# (the first test writes the fixtures with transformers / tokenizers / sentencepiece into build/fixtures).
set -euo pipefail
cd "$(dirname "$0")/.."
tools/setup.sh
tools/build.sh
cd build
# Two tests at a time on CI's two cores: each test process's OpenMP threads (libtorch, MKL, our quantization
# loops) would otherwise spin at every barrier while the other process holds the core they wait for, which
# made some tests hundreds of times slower (Finetune/AgainstTrainerAndPeft.*: 0.3 s alone, 155 s beside
# another test; 1 s with passive waiting). Passive waiting changes no result.
export OMP_WAIT_POLICY="${OMP_WAIT_POLICY:-PASSIVE}"
ctest --output-on-failure -j2 --timeout 1200
