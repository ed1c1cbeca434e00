// AVX-512 with BF16 (vcvtneps2bf16): the avx512 lanes, whose float -> bfloat16
// rounding becomes one instruction when this file is compiled with
// -mavx512bf16; everything else is the avx512 kernel.  So this file builds
// the bfloat16 kernels alone: for the other dtypes the dispatcher uses
// avx512's, the next ISA down the list (kernel_table.h).  The dispatcher calls
// into it only after cpuid (leaf 7, subleaf 1) says the CPU has AVX512_BF16.
#if !defined(__AVX512BF16__)
#error "kernel_avx512bf16.cpp needs -mavx512bf16 (MSVC has no switch for it: setup.py skips it there)"
#endif
#if defined(__GNUC__) && !defined(__clang__)
// GCC 12's AVX-512 intrinsics start from _mm512_undefined_*(), which trips
// -Wmaybe-uninitialized wherever they are inlined (GCC bug 105593), and
// -Wuninitialized where whole kernels inline into one function (the C++
// kernel test's build).
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#endif
#include <immintrin.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#include <utility>

#include "kernel_table.h"

namespace gncpu {
namespace avx512bf16_isa {
namespace {

#include "lanes_avx512.inl"

#define GNCPU_KERNEL_BUILDS(dtype) ((dtype) == GNCPU_BF16)
#include "kernels/loops.inl"

}  // namespace
}  // namespace avx512bf16_isa

constexpr KernelTable kernel_table_avx512bf16 = avx512bf16_isa::make_kernel_table("avx512bf16");

}  // namespace gncpu
