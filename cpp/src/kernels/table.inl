// The table each ISA exports (see kernel_table.h), built as a constant
// expression: every (dtype, layout, streaming, activation) instantiation of
// the loops, indexed by the enum values of gncpu.h.

// The loops for the streaming slots: lanes without non-temporal stores would
// compile them to the plain loops again (same values, twice the code).
template <class S>
constexpr bool kStreams = S::Lanes::non_temporal;

template <class S, int... kActs>
constexpr NchwKernels<typename S::Stored, typename S::Lanes::T> nchw_kernels(
        std::integer_sequence<int, kActs...>) {
    return {&block_moments<S>,
            {{&normalize_rows<S, false, kActs>...}, {&normalize_rows<S, kStreams<S>, kActs>...}},
            &exact_block_moments<S>,
            {&exact_normalize_rows<S, kActs>...},
            &wide_block_moments<S>};
}

template <class S, int... kActs>
constexpr NhwcKernels<typename S::Stored, typename S::Lanes::T> nhwc_kernels(
        std::integer_sequence<int, kActs...>) {
    return {&nhwc_channel_moments<S>,
            {{&nhwc_normalize<S, false, kActs>...}, {&nhwc_normalize<S, kStreams<S>, kActs>...}},
            &exact_channel_moments<S>,
            {&exact_normalize_nhwc<S, kActs>...},
            &wide_channel_moments<S>};
}

template <class S, int... kActs>
constexpr NchwGradKernels<typename S::Stored, typename S::Lanes::T> nchw_grad_kernels(
        std::integer_sequence<int, kActs...>) {
    return {{&nchw_grad_row_sums<S, kActs>...},
            {{&nchw_grad_rows<S, false, kActs>...}, {&nchw_grad_rows<S, kStreams<S>, kActs>...}}};
}

template <class S, int... kActs>
constexpr NhwcGradKernels<typename S::Stored, typename S::Lanes::T> nhwc_grad_kernels(
        std::integer_sequence<int, kActs...>) {
    return {{&nhwc_grad_channel_sums<S, kActs>...},
            {{&nhwc_grad_run<S, false, kActs>...}, {&nhwc_grad_run<S, kStreams<S>, kActs>...}}};
}

template <class S, int... kActs>
constexpr KernelsFor<typename S::Stored, typename S::Lanes::T> kernels_for_each(
        std::integer_sequence<int, kActs...> activations) {
    return {nchw_kernels<S>(activations), nhwc_kernels<S>(activations),
            nchw_grad_kernels<S>(activations), nhwc_grad_kernels<S>(activations),
            {&exact_grad<S, kActs>...}};
}

// Each dtype's kernels as an object of static storage, so that the table can
// point to it.
template <class S>
constexpr KernelsFor<typename S::Stored, typename S::Lanes::T> kernels_for =
    kernels_for_each<S>(std::make_integer_sequence<int, GNCPU_ACT_COUNT>{});

// A kernel file builds every dtype unless it defines GNCPU_KERNEL_BUILDS(dtype)
// before including loops.inl; the table holds null for the others, and they
// are never instantiated.
#ifndef GNCPU_KERNEL_BUILDS
#define GNCPU_KERNEL_BUILDS(dtype) true
#endif

template <class S, bool kBuilt>
constexpr const KernelsFor<typename S::Stored, typename S::Lanes::T>* kernels_if_built() {
    if constexpr (kBuilt) {
        return &kernels_for<S>;
    } else {
        return nullptr;
    }
}

constexpr KernelTable make_kernel_table(const char* name) {
#define GNCPU_TABLE_ENTRY(value, field, Stored, Compute, storage) \
    kernels_if_built<storage, GNCPU_KERNEL_BUILDS(value)>(),
    return {name, GNCPU_DTYPE_LIST(GNCPU_TABLE_ENTRY)};
#undef GNCPU_TABLE_ENTRY
}
