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

CpuFeatures detect() {
    CpuFeatures f;
    const uint32_t max_leaf = cpuid(0, 0).eax;
    if (max_leaf < 1) return f;
    const CpuidRegs leaf1 = cpuid(1, 0);
    if (!(leaf1.ecx & kLeaf1EcxOsxsave)) return f;
    const uint64_t xcr0 = read_xcr0();
    const bool os_avx = (xcr0 & kXcr0AvxState) == kXcr0AvxState;
    const bool os_avx512 = (xcr0 & kXcr0Avx512State) == kXcr0Avx512State;
    const uint32_t leaf7_ebx = max_leaf >= 7 ? cpuid(7, 0).ebx : 0;

    const uint32_t avx_bundle = kLeaf1EcxAvx | kLeaf1EcxFma | kLeaf1EcxF16c;
    f.avx2 = os_avx && (leaf1.ecx & avx_bundle) == avx_bundle && (leaf7_ebx & kLeaf7EbxAvx2);
    const uint32_t avx512_bundle = kLeaf7EbxAvx512F | kLeaf7EbxAvx512Dq | kLeaf7EbxAvx512Bw |
                                   kLeaf7EbxAvx512Vl;
    f.avx512 = f.avx2 && os_avx512 && (leaf7_ebx & avx512_bundle) == avx512_bundle;
    return f;
}
#elif defined(__aarch64__) || defined(_M_ARM64)
CpuFeatures detect() {
    CpuFeatures f;
    f.neon = true;  // mandatory in ARMv8-A
    return f;
}
#else
CpuFeatures detect() { return CpuFeatures{}; }
#endif

}  // namespace

const CpuFeatures& cpu_features() {
    static const CpuFeatures features = detect();  // thread-safe initialisation
    return features;
}

int64_t l2_cache_bytes() {
    constexpr int64_t kDefault = 512 * 1024;
#if defined(__linux__) && defined(_SC_LEVEL2_CACHE_SIZE)
    const long reported = sysconf(_SC_LEVEL2_CACHE_SIZE);
    // Virtual machines sometimes report 0 or nonsense; keep to a sane range.
    if (reported >= 128 * 1024 && reported <= 64 * 1024 * 1024) return reported;
#endif
    return kDefault;
}

int64_t l3_cache_bytes() {
    constexpr int64_t kDefault = 16 * 1024 * 1024;
#if defined(__linux__) && defined(_SC_LEVEL3_CACHE_SIZE)
    const long reported = sysconf(_SC_LEVEL3_CACHE_SIZE);
    if (reported >= 1024 * 1024 && reported <= 4096LL * 1024 * 1024) return reported;
#endif
    return kDefault;
}

}  // namespace gncpu
