// What the CPU and operating system can run, read once.
#ifndef GNCPU_CPU_FEATURES_H
#define GNCPU_CPU_FEATURES_H

#include <stdint.h>

namespace gncpu {

// One flag per entry of GNCPU_ISA_LIST, named as the ISA.
struct CpuFeatures {
    bool scalar = true;    // the portable kernel runs anywhere
    bool avx2 = false;     // AVX2 + FMA + F16C, with the OS saving YMM state
    bool avx512 = false;   // AVX-512 F/BW/DQ/VL, with the OS saving ZMM state
    bool avx512bf16 = false;  // avx512 + AVX512_BF16 (vcvtneps2bf16)
    bool neon = false;     // Advanced SIMD (always on AArch64)
};

const CpuFeatures& cpu_features();

// Bytes of L2 cache per core, from the OS where it says (Linux sysconf),
// otherwise a conservative default.
int64_t l2_cache_bytes();

// Bytes of last-level cache, likewise.
int64_t l3_cache_bytes();

}  // namespace gncpu

#endif  // GNCPU_CPU_FEATURES_H
