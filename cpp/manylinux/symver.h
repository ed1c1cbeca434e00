/* Force-included (-include) into every translation unit of a GNCPU_MANYLINUX=1
 * build: binds the libm entry points that glibc re-versioned to their oldest
 * version, so the extension loads on glibc 2.17 (manylinux2014).
 *
 * glibc 2.27 (the float ones) and 2.29 (the double ones) added new versions of
 * exp, exp2, log, log2, pow that skip the SVID error-handling wrapper; a
 * program linked against a newer glibc references those (exp@GLIBC_2.29) and
 * will not load on an older one.  The old versions are still exported by every
 * glibc and return the same values (the wrapper calls the same implementation
 * and only differs in how errno is set on overflow).  gncpu's float32 kernels
 * use their own vectorised exp/erf; libm is called by the float64 activations.
 *
 * A directive for a function the translation unit does not call is a no-op. */
#ifndef GNCPU_MANYLINUX_SYMVER_H
#define GNCPU_MANYLINUX_SYMVER_H

#if defined(__linux__) && defined(__has_include)
#if __has_include(<features.h>)
#include <features.h> /* defines __GLIBC__ on glibc, not on musl */
#endif
#endif
/* glibc 2.38 redirects scanf and strtol to C23 versions (__isoc23_fscanf,
 * GLIBC_2.38) for _GNU_SOURCE, which g++ always defines: keep the C99 ones,
 * which every glibc since 2.7 has (gncpu reads sysfs with fscanf).  The
 * switch is __GLIBC_USE_C2X_STRTOL in glibc 2.38-2.39, _C23_ from 2.40. */
#if defined(__GLIBC__) && defined(__GLIBC_USE_C2X_STRTOL)
#undef __GLIBC_USE_C2X_STRTOL
#define __GLIBC_USE_C2X_STRTOL 0
#endif
#if defined(__GLIBC__) && defined(__GLIBC_USE_C23_STRTOL)
#undef __GLIBC_USE_C23_STRTOL
#define __GLIBC_USE_C23_STRTOL 0
#endif

#if defined(__GLIBC__) && defined(__x86_64__)
#define GNCPU_OLD_LIBM "GLIBC_2.2.5"
#elif defined(__GLIBC__) && defined(__aarch64__)
#define GNCPU_OLD_LIBM "GLIBC_2.17"
#endif

#ifdef GNCPU_OLD_LIBM
__asm__(".symver exp,exp@" GNCPU_OLD_LIBM);
__asm__(".symver exp2,exp2@" GNCPU_OLD_LIBM);
__asm__(".symver log,log@" GNCPU_OLD_LIBM);
__asm__(".symver log2,log2@" GNCPU_OLD_LIBM);
__asm__(".symver pow,pow@" GNCPU_OLD_LIBM);
__asm__(".symver expf,expf@" GNCPU_OLD_LIBM);
__asm__(".symver exp2f,exp2f@" GNCPU_OLD_LIBM);
__asm__(".symver logf,logf@" GNCPU_OLD_LIBM);
__asm__(".symver log2f,log2f@" GNCPU_OLD_LIBM);
__asm__(".symver powf,powf@" GNCPU_OLD_LIBM);
#undef GNCPU_OLD_LIBM
#endif

#endif
