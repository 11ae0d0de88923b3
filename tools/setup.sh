#!/usr/bin/env bash
# Installs everything autotrain needs to build and test, idempotently:
#   - Debian 12 packages (compiler, CMake, the C++ libraries), skipped when all are installed;
#   - .venv with the torch wheel (libtorch) and the Python test oracles pinned in tools/requirements.txt,
#     skipped when the venv already matches that file.
# CUDA is not installed here: when nvcc is on PATH the kernels are compiled too.
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(build-essential cmake ninja-build pkg-config ccache git python3 python3-venv
          nlohmann-json3-dev libcli11-dev libspdlog-dev libfmt-dev libsentencepiece-dev
          libgtest-dev libgmock-dev libpcre2-dev libicu-dev libgloo-dev zlib1g-dev libzstd-dev)

missing=()
for package in "${packages[@]}"; do
  status=$(dpkg-query -W -f='${Status}' "$package" 2>/dev/null || true)
  [[ "$status" == "install ok installed" ]] || missing+=("$package")
done
if ((${#missing[@]})); then
  echo "setup: installing Debian packages: ${missing[*]}"
  sudo=""
  [[ $(id -u) -eq 0 ]] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

requirements=tools/requirements.txt
stamp=.venv/.requirements.sha256
want=$(sha256sum "$requirements" | cut -d' ' -f1)
if [[ ! -x .venv/bin/python3 || ! -f "$stamp" || "$(cat "$stamp")" != "$want" ]]; then
  echo "setup: creating .venv with $(grep -c '==' "$requirements") pinned packages (torch is ~3 GB with its CUDA libraries)"
  # The installed venv takes ~6.1 GB and pip holds the downloaded wheels (~3 GB) beside it while it installs;
  # say so up front rather than let pip stop half way with "[Errno 28] No space left on device".
  need_gb=10
  free_gb=$(df -Pk . | awk 'NR == 2 {print int($4 / 1048576)}')
  if ((free_gb < need_gb)); then
    echo "setup: only ${free_gb} GB free on $(df -P . | awk 'NR == 2 {print $6}') for .venv in $PWD;" \
         "installing torch and the test oracles needs about ${need_gb} GB: free some space and rerun tools/setup.sh" >&2
    exit 1
  fi
  [[ -x .venv/bin/python3 ]] || /usr/bin/python3 -m venv .venv
  # --no-cache-dir: no second copy of the wheels in ~/.cache/pip (a rerun only happens when the pins change).
  pip_install=(.venv/bin/python3 -m pip install -q --disable-pip-version-check --no-cache-dir)
  "${pip_install[@]}" --upgrade pip
  "${pip_install[@]}" -r "$requirements"
  echo "$want" > "$stamp"
fi
echo "setup: ready ($(.venv/bin/python3 -c 'import torch; print("torch", torch.__version__)'))"
