// The kernel loops, written once for every ISA.
//
// Included by kernel_<isa>.cpp *inside an anonymous namespace*, after that
// file has defined two lane types, F32 and F64, each providing:
//   T, V, width, zero(), set1(T), load(const T*), store(T*, V),
//   stream(T*, V) (a non-temporal store to a width-aligned address, or a plain
//   store where the ISA has none), non_temporal (whether stream() is one: if
//   not, the table reuses the plain loops for streaming), add(V, V), sub(V, V), mul(V, V), mul_add(a, b, c) = a*b + c,
//   first_lanes(k, a, b) (lanes [0, k) of a and the rest of b, 0 < k < width),
//   and F64 widen(F32::V, lo, hi) (a float vector as two double ones, for
//   the statistics in double lanes, wide.inl),
// and a function fence_streams() that orders streaming stores.
// F32 also provides
//   for the fused activations (activations.inl): div, max, min (x86
//     semantics: the second operand when either is NaN),
//     neg_mul_sub(a, b, c) = -(a*b) - c, pow2_biased (2^n from n + 1.5 * 2^23 + 127),
//     zero_where_nonpositive(z, a) (a, and 0 where z <= 0; NaN z keeps a);
//   for 16-bit storage (codecs.inl): H, a vector of width 16-bit values, with
//     store16(uint16_t*, H) and stream16 (its non-temporal store, 16-bit-vector
//     aligned; a plain store where the ISA has none); load_half / to_half
//     (IEEE binary16 <-> float, round to nearest even); load_bf16 (bfloat16 ->
//     float); and the integer lanes the bfloat16 rounding rule needs: U,
//     as_bits(V), bits_set1, bits_add, bits_and, bits_or, bits_shr16 (logical),
//     select_nan(v, if_nan, otherwise) and high_halves(U) -> H; optionally
//     round_bf16(V) -> H and any_subnormal(V), a hardware conversion by the
//     same rule for vectors without subnormals (codecs.inl's to_bf16).
//
// Everything here therefore has internal linkage in each ISA's object, and it
// must not call inline library templates (std::min and friends), which would
// be shared between objects compiled for different ISAs.
//
// The loops are written over a *storage* policy S (codecs.inl): how values are
// held in memory (S::Stored) and the lanes they are computed in (S::Lanes).

#include "kernels/codecs.inl"
#include "kernels/common.inl"
#include "kernels/activations.inl"
#include "kernels/walk.inl"
#include "kernels/nchw.inl"
#include "kernels/nhwc.inl"
#include "kernels/exact.inl"
#include "kernels/wide.inl"
#include "kernels/backward.inl"
#include "kernels/table.inl"
