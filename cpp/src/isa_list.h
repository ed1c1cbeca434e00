// Every instruction-set bundle gncpu has a kernel for, written once.
//
// The order is the preference order, from the portable kernel up: the ISA
// numbers of the C API are positions in this list, and the dispatcher picks
// the last entry the CPU supports.  Each entry:
//   X(ID, name, architecture, "gcc/clang flags", "MSVC flags")
// The kernel of `name` is src/kernel_<name>.cpp, compiled with those flags on
// that architecture (setup.py and .ci/build_kernel_test.sh read them from here
// through cpp/isa_flags.py; "unsupported": that compiler cannot build it); `ID` names its CpuFeatures bit and its table,
// kernel_table_<name>.  A new ISA is one line here, its kernel file, and its
// detection in cpu_features.cpp.
#ifndef GNCPU_ISA_LIST_H
#define GNCPU_ISA_LIST_H

#define GNCPU_ISA_LIST(X)                                                                  \
    X(SCALAR, scalar, any, "", "")                                                         \
    X(NEON, neon, aarch64, "", "")                                                         \
    X(AVX2, avx2, x86_64, "-mavx2 -mfma -mf16c", "/arch:AVX2")                             \
    X(AVX512, avx512, x86_64,                                                              \
      "-mavx512f -mavx512bw -mavx512dq -mavx512vl -mavx2 -mfma -mf16c", "/arch:AVX512")     \
    X(AVX512BF16, avx512bf16, x86_64,                                                      \
      "-mavx512f -mavx512bw -mavx512dq -mavx512vl -mavx512bf16 -mavx2 -mfma -mf16c",        \
      "unsupported")

#endif  // GNCPU_ISA_LIST_H
