#!/usr/bin/env bash
# Builds autotrain on a machine without the Debian -dev packages (the GPU image: Python + torch + nvcc, no
# apt, no network), from the packages tools/device-kit.sh put in .debs/ and the wheel in .whl/:
#
#   tools/device-build.sh BUILD_DIR [CMAKE_ARGS...]      e.g. tools/device-build.sh /tmp/build
#   source BUILD_DIR/env.sh                              then run BUILD_DIR/autotrain, ctest, python3 ...
#
# - unpacks every .debs/*.deb with `dpkg -x` (no root, nothing under /) into $AUTOTRAIN_DEBS_PREFIX
#   (default /tmp/autotrain-debs); CMake finds the packages' config files there (CMAKE_PREFIX_PATH) and
#   pkg-config only their .pc files (a wrapper around the unpacked pkgconf: PKG_CONFIG_LIBDIR replaces the
#   default search path and PKG_CONFIG_SYSROOT_DIR turns their /usr into the prefix);
# - libtorch is the one of the `python3` on PATH ($PYTHON overrides; -DTorch_DIR=... in CMAKE_ARGS too);
# - Release, Ninja, CUDA kernels required (AUTOTRAIN_CUDA=ON) for sm_90a only (H100/H200; sm_90a for the
#   matmul's wgmma kernel), to keep the compile short: CMAKE_CUDA_ARCHITECTURES=90a and TORCH_CUDA_ARCH_LIST=9.0a
#   (libtorch's CMake adds -gencode flags for every arch in that list); $CUDA_ARCH / $TORCH_CUDA_ARCH_LIST
#   override them;
# - all targets with nproc jobs ($JOBS overrides);
# - BUILD_DIR/env.sh: LD_LIBRARY_PATH for the unpacked shared libraries (the binaries also carry an RPATH
#   to them; env.sh covers their own dependencies, e.g. libspdlog -> libfmt) and, when `import
#   bitsandbytes` fails, PYTHONPATH to the .whl/ bitsandbytes unpacked into the prefix.
set -euo pipefail
(($# >= 1)) || { echo "usage: tools/device-build.sh BUILD_DIR [CMAKE_ARGS...]" >&2; exit 2; }
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
mkdir -p "$1"
BUILD="$(cd "$1" && pwd)"
shift
PREFIX="${AUTOTRAIN_DEBS_PREFIX:-/tmp/autotrain-debs}"
PYTHON="${PYTHON:-$(command -v python3 || true)}"
[[ -n "$PYTHON" ]] || { echo "device-build: no python3 on PATH (set PYTHON=)" >&2; exit 1; }
shopt -s nullglob
debs=("$ROOT"/.debs/*.deb)
((${#debs[@]})) || { echo "device-build: no .debs/*.deb: run tools/device-kit.sh on the build machine first" >&2; exit 1; }

# ---- unpack the packages (again only when the set of .deb files changed) ----------------------------
stamp="$PREFIX/.debs-stamp"
want=$(cd "$ROOT/.debs" && stat -c '%n %s' -- *.deb | sha256sum | cut -d' ' -f1)
if [[ ! -f "$stamp" || "$(cat "$stamp")" != "$want" ]]; then
  if [[ -d "$PREFIX" && ! -f "$stamp" && -n "$(ls -A "$PREFIX")" ]]; then
    echo "device-build: $PREFIX is not empty and was not made by this script; set AUTOTRAIN_DEBS_PREFIX" >&2
    exit 1
  fi
  rm -rf "$PREFIX"
  mkdir -p "$PREFIX"
  for deb in "${debs[@]}"; do
    if command -v dpkg >/dev/null; then
      dpkg -x "$deb" "$PREFIX"
    else  # a .deb is an ar archive holding data.tar.*; Debian 12 compresses it with xz
      "$PYTHON" - "$deb" "$PREFIX" <<'PY'
import io, sys, tarfile
data = open(sys.argv[1], "rb").read()
assert data[:8] == b"!<arch>\n", f"{sys.argv[1]}: not a .deb"
offset = 8
while offset < len(data):
    name, size = data[offset:offset + 16].decode().strip().rstrip("/"), int(data[offset + 48:offset + 58])
    if name.startswith("data.tar"):
        with tarfile.open(fileobj=io.BytesIO(data[offset + 60:offset + 60 + size])) as tar:
            tar.extractall(sys.argv[2], **({"filter": "tar"} if hasattr(tarfile, "tar_filter") else {}))
    offset += 60 + size + (size & 1)
PY
    fi
  done
  echo "$want" > "$stamp"
  echo "device-build: unpacked ${#debs[@]} packages into $PREFIX"
fi
LIBDIR="$PREFIX/usr/lib/x86_64-linux-gnu"

# pkg-config: always the unpacked pkgconf, seeing only the unpacked .pc files.
mkdir -p "$PREFIX/bin"
cat > "$PREFIX/bin/pkg-config" <<SH
#!/bin/sh
export LD_LIBRARY_PATH="$LIBDIR\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH}"
export PKG_CONFIG_LIBDIR="$LIBDIR/pkgconfig:$PREFIX/usr/share/pkgconfig"
export PKG_CONFIG_SYSROOT_DIR="$PREFIX"
unset PKG_CONFIG_PATH
exec "$PREFIX/usr/bin/pkgconf" "\$@"
SH
chmod +x "$PREFIX/bin/pkg-config"
"$PREFIX/bin/pkg-config" --exists sentencepiece libpcre2-8 icu-uc \
  || { echo "device-build: the unpacked pkgconf cannot read sentencepiece/libpcre2-8/icu-uc" >&2; exit 1; }
# gloo's headers in a folder of their own: they are added with -I to one source, and -I$PREFIX/usr/include
# would put Debian's fmt 9 ahead of libtorch's bundled fmt there.
mkdir -p "$PREFIX/gloo-include"
ln -sfn "$PREFIX/usr/include/gloo" "$PREFIX/gloo-include/gloo"

# bitsandbytes for the Python peer (tools/bench_gpu_peer.py), unpacked next to the packages when the
# Python has none of its own.
wheels=("$ROOT"/.whl/bitsandbytes-*.whl)
{
  echo "# source this before running the binaries, ctest or the Python peer (written by tools/device-build.sh)"
  echo "export LD_LIBRARY_PATH=\"$LIBDIR\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH}\""
  if ! env -u PYTHONPATH "$PYTHON" -c "import bitsandbytes" >/dev/null 2>&1 && ((${#wheels[@]})); then
    rm -rf "$PREFIX/python"
    "$PYTHON" -m zipfile -e "${wheels[0]}" "$PREFIX/python"
    echo "export PYTHONPATH=\"$PREFIX/python\${PYTHONPATH:+:\$PYTHONPATH}\""
  fi
} > "$BUILD/env.sh"
# shellcheck disable=SC1091
source "$BUILD/env.sh"  # the build runs autotrain_tests (gtest discovery), which needs the libraries

# ---- configure and build -----------------------------------------------------------------------------
if ! command -v nvcc >/dev/null && [[ -x /usr/local/cuda/bin/nvcc ]]; then
  export PATH="/usr/local/cuda/bin:$PATH"
fi
export TORCH_CUDA_ARCH_LIST="${TORCH_CUDA_ARCH_LIST:-9.0a}"
generator=()
[[ -f "$BUILD/CMakeCache.txt" ]] || generator=(-G Ninja)
cmake -S "$ROOT" -B "$BUILD" "${generator[@]}" \
  -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_POLICY_VERSION_MINIMUM=3.5 \
  -DAUTOTRAIN_PYTHON="$PYTHON" \
  -DAUTOTRAIN_CUDA=ON \
  -DCMAKE_CUDA_ARCHITECTURES="${CUDA_ARCH:-90a}" \
  -DCMAKE_PREFIX_PATH="$PREFIX/usr" \
  -DPKG_CONFIG_EXECUTABLE="$PREFIX/bin/pkg-config" \
  -DAUTOTRAIN_GLOO_INCLUDE_DIR="$PREFIX/gloo-include" \
  -DCMAKE_EXE_LINKER_FLAGS="-Wl,-rpath,$LIBDIR" \
  "$@"
cmake --build "$BUILD" -j"${JOBS:-$(nproc)}"
echo "device-build: built in $BUILD; before running anything there:"
echo "  source $BUILD/env.sh"
grep '^export' "$BUILD/env.sh"
