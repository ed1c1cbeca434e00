// How values are held in memory and converted to the lanes they are computed
// in: the storage policies, and the float16/bfloat16 codecs.  Part of the
// kernels (see loops.inl): compiled once per ISA, inside its anonymous namespace.

// Exact scalar conversions from the 16-bit formats (tails, the first value of
// a block, and the portable kernel's lanes).
inline float half_bits_to_float(uint16_t h) {
    const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
    const uint32_t exponent = (h >> 10) & 0x1fu;
    const uint32_t mantissa = h & 0x3ffu;
    uint32_t bits;
    if (exponent == 0) {  // zero or subnormal: mantissa * 2^-24, exact in float
        const float value = static_cast<float>(mantissa) * 5.9604644775390625e-08f;
        memcpy(&bits, &value, sizeof(bits));
        bits |= sign;
    } else if (exponent == 31) {
        bits = sign | 0x7f800000u | (mantissa << 13);
    } else {
        bits = sign | ((exponent + 112u) << 23) | (mantissa << 13);
    }
    float f;
    memcpy(&f, &bits, sizeof(f));
    return f;
}

// IEEE binary16, round to nearest even, for ISAs without a hardware
// conversion (x86 has F16C, AArch64 fcvt).
inline uint16_t float_to_half_bits(float f) {
    uint32_t x;
    memcpy(&x, &f, sizeof(x));
    const uint32_t sign = (x >> 16) & 0x8000u;
    const uint32_t magnitude = x & 0x7fffffffu;
    if (magnitude >= 0x7f800000u) return static_cast<uint16_t>(sign | (magnitude > 0x7f800000u ? 0x7e00u : 0x7c00u));
    if (magnitude >= 0x477ff000u) return static_cast<uint16_t>(sign | 0x7c00u);  // >= 65520: inf
    if (magnitude < 0x38800000u) {  // below 2^-14: a subnormal half (or zero)
        float a;
        memcpy(&a, &magnitude, sizeof(a));
        const float units = a * 16777216.0f;                    // in units of 2^-24, exact
        const float rounded = (units + 8388608.0f) - 8388608.0f;  // to nearest even integer
        return static_cast<uint16_t>(sign | static_cast<uint32_t>(rounded));
    }
    uint32_t half = (magnitude - 0x38000000u) >> 13;
    const uint32_t rest = magnitude & 0x1fffu;
    if (rest > 0x1000u || (rest == 0x1000u && (half & 1u))) ++half;  // may carry into the exponent
    return static_cast<uint16_t>(sign | half);
}

inline float bf16_bits_to_float(uint16_t b) {
    const uint32_t bits = static_cast<uint32_t>(b) << 16;
    float f;
    memcpy(&f, &bits, sizeof(f));
    return f;
}

// float32 lanes to bfloat16, the one rounding rule of every ISA: round to
// nearest even by adding 0x7fff plus the lowest kept bit, then keep the high
// half; a NaN keeps its payload's high half with the quiet bit set (rounding
// could carry it into an infinity).  The lanes supply the integer operations,
// or, where the CPU rounds by the same rule in one instruction (AVX-512 BF16),
// round_bf16 and any_subnormal: that instruction reads subnormals as zero, so
// a vector holding one takes the integer rule.
template <class L, class = void>
struct HasBf16Rounding {
    static constexpr bool value = false;
};
template <class L>
struct HasBf16Rounding<L, decltype(void(&L::round_bf16))> {
    static constexpr bool value = true;
};

template <class L>
inline typename L::H to_bf16(typename L::V v) {
    if constexpr (HasBf16Rounding<L>::value) {
        if (!L::any_subnormal(v)) return L::round_bf16(v);
    }
    using U = typename L::U;
    const U bits = L::as_bits(v);
    const U lowest_kept = L::bits_and(L::bits_shr16(bits), L::bits_set1(1));
    const U rounded = L::bits_add(bits, L::bits_add(L::bits_set1(0x7fff), lowest_kept));
    const U quiet_nan = L::bits_or(bits, L::bits_set1(0x00400000));
    return L::high_halves(L::select_nan(v, quiet_nan, rounded));
}

// Values held as they are computed (float32, float64).
template <class L>
struct NativeStorage {
    using Stored = typename L::T;
    using Lanes = L;
    static typename L::V load(const Stored* p) { return L::load(p); }
    static void store(Stored* p, typename L::V v) { L::store(p, v); }
    static void stream(Stored* p, typename L::V v) { L::stream(p, v); }
    static typename L::T to_compute(Stored v) { return v; }
};

// IEEE float16 held in 16 bits, computed in float32 lanes.
template <class L>
struct HalfStorage {
    using Stored = uint16_t;
    using Lanes = L;
    static typename L::V load(const Stored* p) { return L::load_half(p); }
    static void store(Stored* p, typename L::V v) { L::store16(p, L::to_half(v)); }
    static void stream(Stored* p, typename L::V v) { L::stream16(p, L::to_half(v)); }
    static float to_compute(Stored v) { return half_bits_to_float(v); }
};

// bfloat16 held in 16 bits, computed in float32 lanes.
template <class L>
struct BFloat16Storage {
    using Stored = uint16_t;
    using Lanes = L;
    static typename L::V load(const Stored* p) { return L::load_bf16(p); }
    static void store(Stored* p, typename L::V v) { L::store16(p, to_bf16<L>(v)); }
    static void stream(Stored* p, typename L::V v) { L::stream16(p, to_bf16<L>(v)); }
    static float to_compute(Stored v) { return bf16_bits_to_float(v); }
};

using F32Storage = NativeStorage<F32>;
using F64Storage = NativeStorage<F64>;
using F16Storage = HalfStorage<F32>;
using BF16Storage = BFloat16Storage<F32>;
