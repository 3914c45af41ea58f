#!/usr/bin/env bash
# Builds the arm64 sysroot in which the tests run aarch64 model bundles under qemu user-mode emulation:
# Debian's arm64 Python 3.11 (from the Debian archive) plus the aarch64 wheels of everything the agent needs
# (TVM runtime, numpy, OpenCV, gRPC, … : the base dependencies of pyproject.toml, from PyPI), so that both the
# compiled modules and the agent itself run emulated. Needs root for `dpkg --add-architecture arm64`.
#   scripts/arm64-sysroot.sh [DEST]     (default ~/.cache/lookout-edge/arm64-sysroot; the tests look there,
#                                        or in $LOOKOUT_EDGE_ARM64_SYSROOT)
set -euo pipefail
dest="${1:-${LOOKOUT_EDGE_ARM64_SYSROOT:-$HOME/.cache/lookout-edge/arm64-sysroot}}"
marker="$dest/.complete-agent"  # a sysroot made before it held the whole agent lacks its marker and is rebuilt
[ -f "$marker" ] && { echo "arm64 sysroot ready: $dest"; exit 0; }
if ! dpkg --print-foreign-architectures | grep -qx arm64; then
    dpkg --add-architecture arm64
    apt-get update -qq
fi
packages=(libc6 libgcc-s1 libstdc++6 gcc-12-base zlib1g libexpat1 libffi8 libbz2-1.0 liblzma5 libssl3 libcrypt1
          libuuid1 libsqlite3-0 libncursesw6 libtinfo6 libreadline8 libdb5.3 libnsl2 libtirpc3 libgssapi-krb5-2
          libkrb5-3 libk5crypto3 libkrb5support0 libcom-err2 libkeyutils1 libpython3.11-minimal
          libpython3.11-stdlib python3.11-minimal)
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
(cd "$work" && apt-get download -qq "${packages[@]/%/:arm64}")
rm -rf "$dest" && mkdir -p "$dest/site"
for deb in "$work"/*.deb; do dpkg -x "$deb" "$dest"; done
# The base dependencies (no extras) of the installed lookout-edge with their pins, for aarch64 / CPython 3.11.
mapfile -t pins < <(python3 -c '
from importlib.metadata import requires
for r in requires("lookout-edge"):
    if "extra ==" not in r:
        print(r.split(";")[0].strip())')
platforms=()
for minor in $(seq 17 36); do platforms+=(--platform "manylinux_2_${minor}_aarch64"); done
python3 -m pip download --quiet --only-binary=:all: --platform manylinux2014_aarch64 "${platforms[@]}" \
    --python-version 3.11 --implementation cp --abi cp311 --dest "$work/wheels" "${pins[@]}"
for wheel in "$work"/wheels/*.whl; do python3 -m zipfile -e "$wheel" "$dest/site"; done
touch "$marker"
echo "arm64 sysroot ready: $dest ($(du -sh "$dest" | cut -f1))"
