#include "dispatch.h"

#include <atomic>

#include "cpu_features.h"
#include "gncpu/gncpu.h"

namespace gncpu {
namespace {

// Which ISAs the build compiled in (setup.py defines GNCPU_HAVE_<ISA> for
// each kernel_<isa>.cpp it built).
const KernelTable* compiled_table(int isa) {
    switch (isa) {
        case GNCPU_ISA_SCALAR: return &kernel_table_scalar;
#if defined(GNCPU_HAVE_AVX2)
        case GNCPU_ISA_AVX2: return &kernel_table_avx2;
#endif
#if defined(GNCPU_HAVE_AVX512)
        case GNCPU_ISA_AVX512: return &kernel_table_avx512;
#endif
#if defined(GNCPU_HAVE_NEON)
        case GNCPU_ISA_NEON: return &kernel_table_neon;
#endif
        default: return nullptr;
    }
}

bool cpu_runs(int isa) {
    const CpuFeatures& f = cpu_features();
    switch (isa) {
        case GNCPU_ISA_SCALAR: return true;
        case GNCPU_ISA_AVX2: return f.avx2;
        case GNCPU_ISA_AVX512: return f.avx512;
        case GNCPU_ISA_NEON: return f.neon;
        default: return false;
    }
}

int best_isa() {
    // Preference order, best first.
    const int order[] = {GNCPU_ISA_AVX512, GNCPU_ISA_AVX2, GNCPU_ISA_NEON};
    for (int isa : order) {
        if (gncpu_isa_supported(isa)) return isa;
    }
    return GNCPU_ISA_SCALAR;
}

std::atomic<int>& active_isa_slot() {
    static std::atomic<int> slot{best_isa()};  // thread-safe first use
    return slot;
}

}  // namespace

const KernelTable& active_kernels() {
    return *compiled_table(active_isa_slot().load(std::memory_order_acquire));
}

}  // namespace gncpu

extern "C" {

const char* gncpu_isa_name(int isa) {
    switch (isa) {
        case GNCPU_ISA_SCALAR: return "scalar";
        case GNCPU_ISA_AVX2: return "avx2";
        case GNCPU_ISA_AVX512: return "avx512";
        case GNCPU_ISA_NEON: return "neon";
        default: return nullptr;
    }
}

int gncpu_isa_compiled(int isa) { return gncpu::compiled_table(isa) != nullptr; }

int gncpu_isa_supported(int isa) {
    return gncpu_isa_compiled(isa) && gncpu::cpu_runs(isa);
}

int gncpu_active_isa(void) {
    return gncpu::active_isa_slot().load(std::memory_order_acquire);
}

gncpu_status gncpu_set_isa(int isa) {
    if (!gncpu_isa_supported(isa)) return GNCPU_ERR_BAD_ISA;
    gncpu::active_isa_slot().store(isa, std::memory_order_release);
    return GNCPU_OK;
}

}  // extern "C"
