#!/usr/bin/env bash
# The README's test command: installs what is missing, builds, then runs every test through ctest
# (the first test writes the fixtures with transformers / tokenizers / sentencepiece into build/fixtures).
set -euo pipefail
cd "$(dirname "$0")/.."
tools/setup.sh
tools/build.sh
cd build
ctest --output-on-failure -j2 --timeout 1200
