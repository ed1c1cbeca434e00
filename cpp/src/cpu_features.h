// What the CPU and operating system can run, read once.
#ifndef GNCPU_CPU_FEATURES_H
#define GNCPU_CPU_FEATURES_H

#include <stdint.h>

#include "isa_list.h"

namespace gncpu {

// One flag per entry of GNCPU_ISA_LIST, named as the ISA: whether this CPU
// and its OS run that kernel (set by detect() in cpu_features.cpp).
struct CpuFeatures {
#define GNCPU_ISA_FLAG(id, name, arch, gnu_flags, msvc_flags, needs) bool name = false;
    GNCPU_ISA_LIST(GNCPU_ISA_FLAG)
#undef GNCPU_ISA_FLAG
};

const CpuFeatures& cpu_features();

// Bytes of L2 cache per core, from the OS where it says (Linux sysconf),
// otherwise a conservative default.
int64_t l2_cache_bytes();

// Bytes of last-level cache, likewise.
int64_t l3_cache_bytes();

}  // namespace gncpu

#endif  // GNCPU_CPU_FEATURES_H
