#!/usr/bin/env bash
# Builds LLVM's OpenMP runtime (libomp) for the wheel's deployment target and
# architecture, into $GNCPU_OPENMP_PREFIX (default /tmp/libomp), for cibuildwheel
# on macOS.  Homebrew's libomp targets the build machine's macOS instead.
set -euo pipefail
version=${LIBOMP_VERSION:-19.1.7}
prefix=${GNCPU_OPENMP_PREFIX:-/tmp/libomp}
arch=${ARCHFLAGS:-"-arch $(uname -m)"}
arch=${arch#-arch }
work="$(mktemp -d)"
cd "$work"
curl -fsSL -o openmp.tar.xz \
    "https://github.com/llvm/llvm-project/releases/download/llvmorg-${version}/openmp-${version}.src.tar.xz"
curl -fsSL -o cmake.tar.xz \
    "https://github.com/llvm/llvm-project/releases/download/llvmorg-${version}/cmake-${version}.src.tar.xz"
tar xf openmp.tar.xz && tar xf cmake.tar.xz && mv "cmake-${version}.src" cmake
cmake -S "openmp-${version}.src" -B build -DCMAKE_BUILD_TYPE=Release \
    -DCMAKE_INSTALL_PREFIX="$prefix" -DCMAKE_OSX_ARCHITECTURES="$arch" \
    -DCMAKE_OSX_DEPLOYMENT_TARGET="${MACOSX_DEPLOYMENT_TARGET:-11.0}" \
    -DLIBOMP_INSTALL_ALIASES=OFF -DOPENMP_ENABLE_LIBOMPTARGET=OFF
cmake --build build --target install -j "$(sysctl -n hw.ncpu)"
