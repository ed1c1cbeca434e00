// Every instruction-set bundle gncpu has a kernel for, written once.
//
// The order is the preference order, from the portable kernel up: the ISA
// numbers of the C API are positions in this list, and the dispatcher picks
// the last entry the CPU supports.  Each entry:
//   X(ID, name, architecture, "gcc/clang flags", "MSVC flags", what the CPU needs)
// The kernel of `name` is src/kernel_<name>.cpp, compiled with those flags on
// that architecture (setup.py and .ci/build_kernel_test.sh read them from here
// through cpp/isa_flags.py; "unsupported": that compiler cannot build it); `ID`
// names its CpuFeatures flag and its table, kernel_table_<name>.  What the CPU
// needs is read by cpu_features.cpp alone: GNCPU_ANY_CPU (every CPU of the
// architecture), or GNCPU_CPUID(leaf 1 ECX, leaf 7 EBX, ECX, EDX, leaf 7.1
// EAX, XCR0): the CPUID feature bits, all of them, and the register states
// the OS must save (named in cpu_features.cpp).  A new ISA is one line here
// and its kernel file.
#ifndef GNCPU_ISA_LIST_H
#define GNCPU_ISA_LIST_H

#define GNCPU_ISA_LIST(X)                                                                  \
    X(SCALAR, scalar, any, "", "", GNCPU_ANY_CPU)                                          \
    X(NEON, neon, aarch64, "", "", GNCPU_ANY_CPU) /* Advanced SIMD: all of ARMv8-A */      \
    X(AVX2, avx2, x86_64, "-mavx2 -mfma -mf16c", "/arch:AVX2",                             \
      GNCPU_CPUID(AVX | FMA | F16C, AVX2, 0, 0, 0, AVX_STATE))                             \
    X(AVX512, avx512, x86_64,                                                              \
      "-mavx512f -mavx512bw -mavx512dq -mavx512vl -mavx2 -mfma -mf16c", "/arch:AVX512",     \
      GNCPU_CPUID(AVX | FMA | F16C, AVX2 | AVX512F | AVX512DQ | AVX512BW | AVX512VL, 0, 0, \
                  0, AVX512_STATE))                                                        \
    X(AVX512BF16, avx512bf16, x86_64,                                                      \
      "-mavx512f -mavx512bw -mavx512dq -mavx512vl -mavx512bf16 -mavx2 -mfma -mf16c",        \
      "unsupported",                                                                       \
      GNCPU_CPUID(AVX | FMA | F16C, AVX2 | AVX512F | AVX512DQ | AVX512BW | AVX512VL, 0, 0, \
                  AVX512_BF16, AVX512_STATE))

#endif  // GNCPU_ISA_LIST_H
