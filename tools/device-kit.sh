#!/usr/bin/env bash
# Packs what a bare GPU machine (no Debian -dev packages, no bitsandbytes, no network) needs to build and
# benchmark autotrain, into two git-ignored folders that travel with the work tree:
#   .debs/  the Debian 12 packages of tools/setup.sh's C++ libraries (headers, CMake/pkg-config files, static
#           GoogleTest) and their runtime shared libraries, plus pkgconf; tools/device-build.sh unpacks them;
#   .whl/   the bitsandbytes wheel of tools/requirements.txt for CPython 3.12 (the GPU image's Python),
#           cut down to its CPU and CUDA 13.0 libraries (torch cu130 loads libbitsandbytes_cuda130.so).
# Run it here (Debian 12, apt); it downloads only what is missing. Prints the sizes against the 64 MiB that
# a device run carries (the tracked files + these folders).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
PYTHON="${AUTOTRAIN_PYTHON:-$ROOT/.venv/bin/python3}"
[[ -x "$PYTHON" ]] || PYTHON=python3

# Build side: tools/setup.sh's -dev packages (gloo: headers only; libgloo0, hiredis and ibverbs are not
# needed because libtorch_cpu carries gloo itself). Run side: the shared libraries the binaries link (zlib and
# zstd's are on every image; carrying Debian's would put them before the system's for everything in the shell).
dev_packages=(nlohmann-json3-dev libcli11-dev libspdlog-dev libfmt-dev libsentencepiece-dev
              libgtest-dev libgmock-dev libpcre2-dev libicu-dev libgloo-dev zlib1g-dev libzstd-dev)
runtime_packages=(libspdlog1.10 libfmt9 libsentencepiece0 libpcre2-8-0 libicu72)
tool_packages=(pkgconf pkgconf-bin libpkgconf3)

mkdir -p .debs .whl
missing=()
for package in "${dev_packages[@]}" "${runtime_packages[@]}" "${tool_packages[@]}"; do
  compgen -G ".debs/${package}_*.deb" >/dev/null || missing+=("$package")
done
if ((${#missing[@]})); then
  if ! apt-cache show "${missing[0]}" >/dev/null 2>&1; then
    [[ $(id -u) -eq 0 ]] && apt-get update -qq || { echo "device-kit: run 'apt-get update' first" >&2; exit 1; }
  fi
  echo "device-kit: downloading ${#missing[@]} Debian packages: ${missing[*]}"
  (cd .debs && apt-get download -qq "${missing[@]}" 2>&1 | grep -v 'unsandboxed as root' || true)
  for package in "${missing[@]}"; do
    compgen -G ".debs/${package}_*.deb" >/dev/null || { echo "device-kit: $package did not download" >&2; exit 1; }
  done
fi

# bitsandbytes: the version pinned for the tests, as a cp312 manylinux wheel, trimmed.
bnb_version=$(sed -n 's/^bitsandbytes==//p' tools/requirements.txt)
if ! compgen -G ".whl/bitsandbytes-${bnb_version}-*.whl" >/dev/null; then
  download=$(mktemp -d)
  trap 'rm -rf "$download"' EXIT
  platforms=()
  for tag in manylinux_2_17_x86_64 manylinux2014_x86_64 manylinux_2_24_x86_64 manylinux_2_27_x86_64 \
             manylinux_2_28_x86_64 manylinux_2_31_x86_64 manylinux_2_34_x86_64 manylinux_2_35_x86_64; do
    platforms+=(--platform "$tag")
  done
  echo "device-kit: downloading bitsandbytes==$bnb_version (cp312, manylinux x86_64)"
  "$PYTHON" -m pip download -q --disable-pip-version-check --no-deps --only-binary=:all: --python-version 3.12 \
    --implementation cp "${platforms[@]}" -d "$download" "bitsandbytes==$bnb_version"
  "$PYTHON" - "$download"/bitsandbytes-*.whl .whl <<'PY'
"""Rewrites the wheel with only the CPU library and the CUDA 13.0 one (torch cu130's torch.version.cuda
is "13.0"; bitsandbytes' cextension.py loads libbitsandbytes_cuda<major><minor>.so for it, or the one
BNB_CUDA_VERSION names) and a RECORD that lists the files kept, with their hashes."""
import base64, hashlib, re, sys, zipfile
from pathlib import Path

source, out_dir = Path(sys.argv[1]), Path(sys.argv[2])
keep_library = re.compile(r"bitsandbytes/libbitsandbytes_(cpu|cuda130)\.so$")
with zipfile.ZipFile(source) as wheel:
    names = [n for n in wheel.namelist()
             if not (n.startswith("bitsandbytes/libbitsandbytes_") and not keep_library.search(n))]
    record = next(n for n in names if n.endswith(".dist-info/RECORD"))
    kept = [n for n in names if keep_library.search(n)]
    assert any("cuda130" in n for n in kept), f"{source.name} has no libbitsandbytes_cuda130.so"
    target = out_dir / source.name
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as trimmed:
        lines = []
        for name in names:
            if name == record:
                continue
            data = wheel.read(name)
            trimmed.writestr(wheel.getinfo(name), data, compress_type=zipfile.ZIP_DEFLATED)
            digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
            lines.append(f"{name},sha256={digest},{len(data)}")
        lines.append(f"{record},,")
        trimmed.writestr(record, "\n".join(lines) + "\n")
print(f"device-kit: {target} ({target.stat().st_size / 2**20:.1f} MiB, from {source.stat().st_size / 2**20:.1f} MiB)")
PY
fi

bytes_of() { du -cb "$@" | tail -1 | cut -f1; }
debs=$(bytes_of .debs/*.deb)
whl=$(bytes_of .whl/*.whl)
repo=$(git ls-files -z | xargs -0 du -cb | tail -1 | cut -f1)
total=$((debs + whl + repo))
mib() { awk -v b="$1" 'BEGIN { printf "%.1f MiB", b / 1048576 }'; }
echo "device-kit: .debs $(mib "$debs") ($(ls .debs/*.deb | wc -l) packages), .whl $(mib "$whl"), tracked files $(mib "$repo"): total $(mib "$total") of 64 MiB"
((total < 64 * 1048576)) || { echo "device-kit: over the 64 MiB a device run carries" >&2; exit 1; }
