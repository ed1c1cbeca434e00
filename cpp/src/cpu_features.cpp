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

// What an entry of GNCPU_ISA_LIST needs of the CPU: all of these CPUID bits,
// and the OS saving all of these register states (XCR0).
struct IsaNeeds {
    bool any_cpu;  // every CPU of its architecture
    uint32_t leaf1_ecx, leaf7_ebx, leaf7_ecx, leaf7_edx, leaf7_1_eax;
    uint64_t xcr0;
};
#define GNCPU_ANY_CPU (IsaNeeds{true, 0, 0, 0, 0, 0, 0})
#define GNCPU_CPUID(leaf1_ecx, leaf7_ebx, leaf7_ecx, leaf7_edx, leaf7_1_eax, xcr0) \
    (IsaNeeds{false, leaf1_ecx, leaf7_ebx, leaf7_ecx, leaf7_edx, leaf7_1_eax, xcr0})

// The names the list uses.  CPUID.(EAX=1):ECX
constexpr uint32_t FMA = 1u << 12;
constexpr uint32_t OSXSAVE = 1u << 27;
constexpr uint32_t AVX = 1u << 28;
constexpr uint32_t F16C = 1u << 29;
// CPUID.(EAX=7,ECX=0):EBX
constexpr uint32_t AVX2 = 1u << 5;
constexpr uint32_t AVX512F = 1u << 16;
constexpr uint32_t AVX512DQ = 1u << 17;
constexpr uint32_t AVX512BW = 1u << 30;
constexpr uint32_t AVX512VL = 1u << 31;
// CPUID.(EAX=7,ECX=1):EAX (subleaf 1 exists when CPUID.(EAX=7,ECX=0):EAX >= 1)
constexpr uint32_t AVX512_BF16 = 1u << 5;
// XCR0: which register states the OS saves.
constexpr uint64_t kXcr0Sse = 1u << 1;
constexpr uint64_t kXcr0Ymm = 1u << 2;
constexpr uint64_t kXcr0Opmask = 1u << 5;
constexpr uint64_t kXcr0ZmmHi256 = 1u << 6;
constexpr uint64_t kXcr0Hi16Zmm = 1u << 7;
constexpr uint64_t AVX_STATE = kXcr0Sse | kXcr0Ymm;
constexpr uint64_t AVX512_STATE = AVX_STATE | kXcr0Opmask | kXcr0ZmmHi256 | kXcr0Hi16Zmm;

// Whether this build's architecture is an entry's.
#if defined(GNCPU_X86)
constexpr bool kArch_x86_64 = true;
#else
constexpr bool kArch_x86_64 = false;
#endif
#if defined(__aarch64__) || defined(_M_ARM64)
constexpr bool kArch_aarch64 = true;
#else
constexpr bool kArch_aarch64 = false;
#endif
constexpr bool kArch_any = true;

// What the CPU and OS offer, in the registers IsaNeeds names.
struct CpuOffers {
    uint32_t leaf1_ecx = 0, leaf7_ebx = 0, leaf7_ecx = 0, leaf7_edx = 0, leaf7_1_eax = 0;
    uint64_t xcr0 = 0;

    bool meets(const IsaNeeds& n) const {
        return n.any_cpu ||
               ((leaf1_ecx & n.leaf1_ecx) == n.leaf1_ecx && (leaf7_ebx & n.leaf7_ebx) == n.leaf7_ebx &&
                (leaf7_ecx & n.leaf7_ecx) == n.leaf7_ecx && (leaf7_edx & n.leaf7_edx) == n.leaf7_edx &&
                (leaf7_1_eax & n.leaf7_1_eax) == n.leaf7_1_eax && (xcr0 & n.xcr0) == n.xcr0);
    }
};

#if defined(GNCPU_X86)
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

CpuOffers offers() {
    CpuOffers o;
    const uint32_t max_leaf = cpuid(0, 0).eax;
    if (max_leaf < 1) return o;
    o.leaf1_ecx = cpuid(1, 0).ecx;
    // The OS's register states: xgetbv faults unless CPUID says OSXSAVE.
    if (o.leaf1_ecx & OSXSAVE) o.xcr0 = read_xcr0();
    if (max_leaf >= 7) {
        const CpuidRegs leaf7 = cpuid(7, 0);
        o.leaf7_ebx = leaf7.ebx, o.leaf7_ecx = leaf7.ecx, o.leaf7_edx = leaf7.edx;
        if (leaf7.eax >= 1) o.leaf7_1_eax = cpuid(7, 1).eax;
    }
    return o;
}
#else
CpuOffers offers() { return CpuOffers{}; }  // no CPUID: only GNCPU_ANY_CPU entries
#endif

// Each flag: the entry's architecture is this build's and the CPU meets its
// needs (both read from GNCPU_ISA_LIST).
CpuFeatures detect() {
    const CpuOffers o = offers();
    CpuFeatures f;
#define GNCPU_ISA_DETECT(id, name, arch, gnu_flags, msvc_flags, needs) \
    f.name = kArch_##arch && o.meets(needs);
    GNCPU_ISA_LIST(GNCPU_ISA_DETECT)
#undef GNCPU_ISA_DETECT
    return f;
}

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
