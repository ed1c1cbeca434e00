// cpuid says what the CPU implements; xgetbv says whether the OS saves the
// wider registers on a context switch.  A kernel needs both: an OS that does
// not enable AVX state (XCR0) makes every AVX instruction fault.
#include "cpu_features.h"

#if defined(__x86_64__) || defined(_M_X64) || defined(__i386__) || defined(_M_IX86)
#define GNCPU_X86 1
#if defined(_MSC_VER)
#include <intrin.h>
#else
#include <cpuid.h>
#endif
#endif

#if defined(__linux__)
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#endif

namespace gncpu {
namespace {

#if defined(GNCPU_X86)
// CPUID.(EAX=1):ECX
constexpr uint32_t kLeaf1EcxFma = 1u << 12;
constexpr uint32_t kLeaf1EcxOsxsave = 1u << 27;
constexpr uint32_t kLeaf1EcxAvx = 1u << 28;
constexpr uint32_t kLeaf1EcxF16c = 1u << 29;
// CPUID.(EAX=7,ECX=0):EBX
constexpr uint32_t kLeaf7EbxAvx2 = 1u << 5;
constexpr uint32_t kLeaf7EbxAvx512F = 1u << 16;
constexpr uint32_t kLeaf7EbxAvx512Dq = 1u << 17;
constexpr uint32_t kLeaf7EbxAvx512Bw = 1u << 30;
constexpr uint32_t kLeaf7EbxAvx512Vl = 1u << 31;
// CPUID.(EAX=7,ECX=1):EAX (subleaf 1 exists when CPUID.(EAX=7,ECX=0):EAX >= 1)
constexpr uint32_t kLeaf7Sub1EaxAvx512Bf16 = 1u << 5;
// XCR0: which register states the OS saves.
constexpr uint64_t kXcr0Sse = 1u << 1;
constexpr uint64_t kXcr0Ymm = 1u << 2;
constexpr uint64_t kXcr0Opmask = 1u << 5;
constexpr uint64_t kXcr0ZmmHi256 = 1u << 6;
constexpr uint64_t kXcr0Hi16Zmm = 1u << 7;
constexpr uint64_t kXcr0AvxState = kXcr0Sse | kXcr0Ymm;
constexpr uint64_t kXcr0Avx512State = kXcr0AvxState | kXcr0Opmask | kXcr0ZmmHi256 | kXcr0Hi16Zmm;

struct CpuidRegs {
    uint32_t eax, ebx, ecx, edx;
};

CpuidRegs cpuid(uint32_t leaf, uint32_t subleaf) {
    CpuidRegs r{0, 0, 0, 0};
#if defined(_MSC_VER)
    int regs[4];
    __cpuidex(regs, static_cast<int>(leaf), static_cast<int>(subleaf));
    r = {static_cast<uint32_t>(regs[0]), static_cast<uint32_t>(regs[1]),
         static_cast<uint32_t>(regs[2]), static_cast<uint32_t>(regs[3])};
#else
    __cpuid_count(leaf, subleaf, r.eax, r.ebx, r.ecx, r.edx);
#endif
    return r;
}

// Only call when CPUID says OSXSAVE: xgetbv faults otherwise.
uint64_t read_xcr0() {
#if defined(_MSC_VER)
    return _xgetbv(0);
#else
    uint32_t eax, edx;
    // The raw opcode of xgetbv, so no -mxsave is needed for this file.
    __asm__ volatile(".byte 0x0f, 0x01, 0xd0" : "=a"(eax), "=d"(edx) : "c"(0));
    return (static_cast<uint64_t>(edx) << 32) | eax;
#endif
}

// Each flag's conditions: avx2 = AVX2 + FMA + F16C with the OS saving YMM
// state; avx512 = avx2 + AVX-512 F/BW/DQ/VL with the OS saving ZMM state;
// avx512bf16 = avx512 + AVX512_BF16 (vcvtneps2bf16).
CpuFeatures detect() {
    CpuFeatures f;
    f.scalar = true;  // the portable kernel runs anywhere
    const uint32_t max_leaf = cpuid(0, 0).eax;
    if (max_leaf < 1) return f;
    const CpuidRegs leaf1 = cpuid(1, 0);
    if (!(leaf1.ecx & kLeaf1EcxOsxsave)) return f;
    const uint64_t xcr0 = read_xcr0();
    const bool os_avx = (xcr0 & kXcr0AvxState) == kXcr0AvxState;
    const bool os_avx512 = (xcr0 & kXcr0Avx512State) == kXcr0Avx512State;
    const CpuidRegs leaf7 = max_leaf >= 7 ? cpuid(7, 0) : CpuidRegs{};
    const uint32_t leaf7_ebx = leaf7.ebx;
    const uint32_t leaf7_sub1_eax = max_leaf >= 7 && leaf7.eax >= 1 ? cpuid(7, 1).eax : 0;

    const uint32_t avx_bundle = kLeaf1EcxAvx | kLeaf1EcxFma | kLeaf1EcxF16c;
    f.avx2 = os_avx && (leaf1.ecx & avx_bundle) == avx_bundle && (leaf7_ebx & kLeaf7EbxAvx2);
    const uint32_t avx512_bundle = kLeaf7EbxAvx512F | kLeaf7EbxAvx512Dq | kLeaf7EbxAvx512Bw |
                                   kLeaf7EbxAvx512Vl;
    f.avx512 = f.avx2 && os_avx512 && (leaf7_ebx & avx512_bundle) == avx512_bundle;
    f.avx512bf16 = f.avx512 && (leaf7_sub1_eax & kLeaf7Sub1EaxAvx512Bf16);
    return f;
}
#elif defined(__aarch64__) || defined(_M_ARM64)
CpuFeatures detect() {
    CpuFeatures f;
    f.scalar = true;
    f.neon = true;  // Advanced SIMD, mandatory in ARMv8-A
    return f;
}
#else
CpuFeatures detect() {
    CpuFeatures f;
    f.scalar = true;
    return f;
}
#endif

}  // namespace

const CpuFeatures& cpu_features() {
    static const CpuFeatures features = detect();  // thread-safe initialisation
    return features;
}

namespace {

#if defined(__linux__)
// The size of one instance of the level-`level` data or unified cache that
// CPU 0 uses, from sysfs; 0 when it does not say.  Preferred to glibc's
// sysconf, which on AMD parts multiplies the L3 by the CCDs or threads sharing
// it (320 MiB for this Zen 4 VM's 32 MiB L3: outputs up to 64 MiB then kept
// their cache-polluting stores, 1.5x slower than streaming on a 62 MB tensor).
int64_t sysfs_cache_bytes(int level) {
    for (int index = 0; index < 16; ++index) {
        char path[96];
        snprintf(path, sizeof(path), "/sys/devices/system/cpu/cpu0/cache/index%d/level", index);
        FILE* f = fopen(path, "r");
        if (!f) break;
        int found = 0;
        const bool read_level = fscanf(f, "%d", &found) == 1;
        fclose(f);
        if (!read_level || found != level) continue;
        snprintf(path, sizeof(path), "/sys/devices/system/cpu/cpu0/cache/index%d/type", index);
        char type[32] = "";
        if ((f = fopen(path, "r"))) {
            if (fscanf(f, "%31s", type) != 1) type[0] = '\0';
            fclose(f);
        }
        if (strcmp(type, "Instruction") == 0) continue;
        snprintf(path, sizeof(path), "/sys/devices/system/cpu/cpu0/cache/index%d/size", index);
        long long size = 0;
        char unit = 'B';
        if (!(f = fopen(path, "r"))) continue;
        const int fields = fscanf(f, "%lld%c", &size, &unit);
        fclose(f);
        if (fields < 1 || size <= 0) continue;
        if (unit == 'K') size *= 1024;
        if (unit == 'M') size *= 1024 * 1024;
        return static_cast<int64_t>(size);
    }
    return 0;
}
#endif

// The cache size the OS reports for `level`, or `fallback` outside [low, high]
// (virtual machines sometimes report 0 or nonsense).
int64_t cache_bytes(int level, int64_t low, int64_t high, int64_t fallback) {
#if defined(__linux__)
    const int64_t from_sysfs = sysfs_cache_bytes(level);
    if (from_sysfs >= low && from_sysfs <= high) return from_sysfs;
#if defined(_SC_LEVEL2_CACHE_SIZE) && defined(_SC_LEVEL3_CACHE_SIZE)
    const long reported = sysconf(level == 2 ? _SC_LEVEL2_CACHE_SIZE : _SC_LEVEL3_CACHE_SIZE);
    if (reported >= low && reported <= high) return reported;
#endif
#else
    (void)level, (void)low, (void)high;
#endif
    return fallback;
}

}  // namespace

int64_t l2_cache_bytes() {
    return cache_bytes(2, 128 * 1024, 64 * 1024 * 1024, 512 * 1024);
}

int64_t l3_cache_bytes() {
    return cache_bytes(3, 1024 * 1024, 4096LL * 1024 * 1024, 16 * 1024 * 1024);
}

}  // namespace gncpu
