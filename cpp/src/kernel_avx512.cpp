// AVX-512 lanes (16 x float, 8 x double).  Only this file is compiled with
// -mavx512f/bw/dq/vl; the dispatcher calls into it only after cpuid and xgetbv
// say the CPU and OS support the whole bundle.
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
namespace avx512_isa {
namespace {

#include "lanes_avx512.inl"

#include "kernels/loops.inl"

}  // namespace
}  // namespace avx512_isa

// constexpr: the compiler must initialise it at compile time, so no code of
// this file runs (at load or otherwise) until the dispatcher calls it.
constexpr KernelTable kernel_table_avx512 = avx512_isa::make_kernel_table("avx512");

}  // namespace gncpu
