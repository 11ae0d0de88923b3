#!/usr/bin/env bash
# The README's main-job command: installs what is missing, builds, then runs autotrain on the bundled
# example (configs/example). Until the training loop lands it validates the example configuration.
set -euo pipefail
cd "$(dirname "$0")/.."
tools/setup.sh
tools/build.sh
build/autotrain --help
build/autotrain train --check --config configs/example/training_params.json
