#include "dispatch.h"

#include <atomic>

#include "cpu_features.h"
#include "gncpu/gncpu.h"
#include "isa_list.h"

namespace gncpu {
namespace {

// Positions in GNCPU_ISA_LIST.
enum IsaIndex : int {
#define GNCPU_ISA_INDEX(id, name, arch, gnu_flags, msvc_flags, needs) kIsa##id,
    GNCPU_ISA_LIST(GNCPU_ISA_INDEX)
#undef GNCPU_ISA_INDEX
    kIsaCount
};

// The tables the build compiled in: setup.py defines GNCPU_HAVE_<ID> as 1
// for each kernel_<isa>.cpp it built and 0 for the others (an ISA it never
// heard of fails to compile here, rather than silently going missing).
#define GNCPU_HAVE_SCALAR 1
#define GNCPU_TABLE_IF_1(name) &kernel_table_##name
#define GNCPU_TABLE_IF_0(name) nullptr
#define GNCPU_TABLE_IF_(compiled, name) GNCPU_TABLE_IF_##compiled(name)
#define GNCPU_TABLE_IF(compiled, name) GNCPU_TABLE_IF_(compiled, name)
const KernelTable* compiled_table(int isa) {
    switch (isa) {
#define GNCPU_ISA_TABLE(id, name, arch, gnu_flags, msvc_flags, needs) \
    case kIsa##id: return GNCPU_TABLE_IF(GNCPU_HAVE_##id, name);
        GNCPU_ISA_LIST(GNCPU_ISA_TABLE)
#undef GNCPU_ISA_TABLE
    }
    return nullptr;
}

bool cpu_runs(int isa) {
    const CpuFeatures& f = cpu_features();
    switch (isa) {
#define GNCPU_ISA_RUNS(id, name, arch, gnu_flags, msvc_flags, needs) \
    case kIsa##id: return f.name;
        GNCPU_ISA_LIST(GNCPU_ISA_RUNS)
#undef GNCPU_ISA_RUNS
    }
    return false;
}

// An ISA's table with every dtype filled in: a dtype its kernel file does not
// build comes from the next ISA down the list that the CPU runs and that
// builds it (the portable kernel builds all).  Made once, by plain copies in
// baseline code, on first use.
struct ResolvedTables {
    KernelTable table[kIsaCount];

    ResolvedTables() : table{} {
        for (int isa = 0; isa < kIsaCount; ++isa) {
            const KernelTable* own = compiled_table(isa);
            if (own == nullptr) continue;
            KernelTable& t = table[isa];
            t = *own;
#define GNCPU_RESOLVE_FIELD(value, field, Stored, Compute, storage)                 \
    for (int below = isa - 1; t.field == nullptr && below >= 0; --below) {          \
        const KernelTable* lower = compiled_table(below);                           \
        if (lower != nullptr && (below == kIsaSCALAR || cpu_runs(below))) {         \
            t.field = lower->field;                                                 \
        }                                                                           \
    }
            GNCPU_DTYPE_LIST(GNCPU_RESOLVE_FIELD)
#undef GNCPU_RESOLVE_FIELD
        }
    }
};

const KernelTable& resolved_table(int isa) {
    static const ResolvedTables tables;  // thread-safe first use
    return tables.table[isa];
}

// The list runs from the portable kernel up: the last supported entry wins.
int best_isa() {
    for (int isa = kIsaCount - 1; isa > 0; --isa) {
        if (gncpu_isa_supported(isa)) return isa;
    }
    return kIsaSCALAR;
}

std::atomic<int>& active_isa_slot() {
    static std::atomic<int> slot{best_isa()};  // thread-safe first use
    return slot;
}

}  // namespace

const KernelTable& active_kernels() {
    return resolved_table(active_isa_slot().load(std::memory_order_acquire));
}

}  // namespace gncpu

extern "C" {

int gncpu_isa_count(void) { return gncpu::kIsaCount; }

const char* gncpu_isa_name(int isa) {
    switch (isa) {
#define GNCPU_ISA_NAME(id, name, arch, gnu_flags, msvc_flags, needs) \
    case gncpu::kIsa##id: return #name;
        GNCPU_ISA_LIST(GNCPU_ISA_NAME)
#undef GNCPU_ISA_NAME
    }
    return nullptr;
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
