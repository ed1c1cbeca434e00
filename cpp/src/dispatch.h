// Which kernel table runs: chosen once at load, changeable with set_isa.
#ifndef GNCPU_DISPATCH_H
#define GNCPU_DISPATCH_H

#include "kernel_table.h"

namespace gncpu {

// The table in force now.  Callers read it once per call, so a concurrent
// set_isa never mixes two ISAs inside one call.
const KernelTable& active_kernels();

}  // namespace gncpu

#endif  // GNCPU_DISPATCH_H
