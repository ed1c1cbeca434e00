// Linked into a GNCPU_MANYLINUX=1 build: the C++17 operator new/delete
// overloads that GCC 4.8's libstdc++ (the one manylinux2014 promises) lacks,
// defined inside the extension with hidden visibility so the compiler's calls
// bind here instead of to libstdc++'s CXXABI_1.3.9 / 1.3.11 symbols.  Nothing
// outside the extension sees them (other libraries keep the process's
// operator new).  <new> declares them with default visibility, so the
// attribute cannot say it: the assembler's .hidden does, below.
//
//   operator delete(void*, size_t)                      sized delete, CXXABI_1.3.9
//   operator new(size_t, align_val_t) and its deletes   over-aligned types, CXXABI_1.3.11
//     (schedule.h's cache-line-aligned ThreadState in a std::vector)
//
// They behave as the standard ones: aligned new throws std::bad_alloc on
// failure (the new-handler loop is left out: std::get_new_handler is
// GLIBCXX_3.4.20, newer than manylinux2014 allows), and the sized and aligned
// deletes free what the matching new returned.
#include <cstddef>
#include <cstdlib>
#include <new>

// The unsized deletes stay libstdc++'s (they are GLIBCXX_3.4): GCC's
// suggestion to define them alongside is for whole programs.
#pragma GCC diagnostic ignored "-Wsized-deallocation"

#define GNCPU_COMPAT

// Itanium C++ ABI names of the functions defined below (x86-64 and AArch64,
// where size_t is unsigned long).
__asm__(".hidden _ZnwmSt11align_val_t\n"
        ".hidden _ZnamSt11align_val_t\n"
        ".hidden _ZnwmSt11align_val_tRKSt9nothrow_t\n"
        ".hidden _ZnamSt11align_val_tRKSt9nothrow_t\n"
        ".hidden _ZdlPvSt11align_val_t\n"
        ".hidden _ZdaPvSt11align_val_t\n"
        ".hidden _ZdlPvmSt11align_val_t\n"
        ".hidden _ZdaPvmSt11align_val_t\n"
        ".hidden _ZdlPvSt11align_val_tRKSt9nothrow_t\n"
        ".hidden _ZdaPvSt11align_val_tRKSt9nothrow_t\n"
        ".hidden _ZdlPvm\n"
        ".hidden _ZdaPvm\n");

namespace {
void* aligned_allocate(std::size_t size, std::align_val_t alignment) noexcept {
    std::size_t align = static_cast<std::size_t>(alignment);
    if (align < sizeof(void*)) align = sizeof(void*);
    void* p = nullptr;
    if (posix_memalign(&p, align, size ? size : 1) != 0) return nullptr;
    return p;
}
}  // namespace

GNCPU_COMPAT void* operator new(std::size_t size, std::align_val_t alignment) {
    if (void* p = aligned_allocate(size, alignment)) return p;
    throw std::bad_alloc();
}
GNCPU_COMPAT void* operator new[](std::size_t size, std::align_val_t alignment) {
    return ::operator new(size, alignment);
}
GNCPU_COMPAT void* operator new(std::size_t size, std::align_val_t alignment,
                                const std::nothrow_t&) noexcept {
    return aligned_allocate(size, alignment);
}
GNCPU_COMPAT void* operator new[](std::size_t size, std::align_val_t alignment,
                                  const std::nothrow_t&) noexcept {
    return aligned_allocate(size, alignment);
}

GNCPU_COMPAT void operator delete(void* p, std::align_val_t) noexcept { std::free(p); }
GNCPU_COMPAT void operator delete[](void* p, std::align_val_t) noexcept { std::free(p); }
GNCPU_COMPAT void operator delete(void* p, std::size_t, std::align_val_t) noexcept { std::free(p); }
GNCPU_COMPAT void operator delete[](void* p, std::size_t, std::align_val_t) noexcept { std::free(p); }
GNCPU_COMPAT void operator delete(void* p, std::align_val_t, const std::nothrow_t&) noexcept {
    std::free(p);
}
GNCPU_COMPAT void operator delete[](void* p, std::align_val_t, const std::nothrow_t&) noexcept {
    std::free(p);
}

// Sized delete of memory from the ordinary operator new (libstdc++'s, which
// is malloc-based on every glibc libstdc++): forward to the unsized delete,
// which is what libstdc++'s own sized delete does.
GNCPU_COMPAT void operator delete(void* p, std::size_t) noexcept { ::operator delete(p); }
GNCPU_COMPAT void operator delete[](void* p, std::size_t) noexcept { ::operator delete[](p); }
